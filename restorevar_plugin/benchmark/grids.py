"""Labelled comparison grids ``[input | method 1 | ... | GT]`` with optional zoomed crops (Pillow).

Every panel is shown at the size of the input (outputs of another size are resized, Lanczos); a label strip
sits above each panel. Each crop ``{x, y, size}`` (fractions of the image side) is outlined in every panel and
adds one row below with that region enlarged to the panel width (nearest neighbour, so pixels stay visible).
"""
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from restorevar_plugin.atomic_files import atomic_output

LABEL_HEIGHT = 22
GAP = 4
CROP_COLOURS = ((255, 64, 64), (64, 160, 255), (64, 220, 64), (255, 200, 0))


def _font():
    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow without FreeType size support
        return ImageFont.load_default()


def crop_box(crop, width, height):
    """Pixel box ``(left, top, right, bottom)`` of a crop given as fractions ``{x, y, size}`` of the image side."""
    side = max(1, round(crop['size'] * min(width, height)))
    left, top = round(crop['x'] * width), round(crop['y'] * height)
    left, top = min(left, width - side), min(top, height - side)
    return left, top, left + side, top + side


def comparison_grid(panels, crops=()):
    """Compose labelled panels side by side.

    Args:
        panels (list[tuple[str, Path]]): ``(label, image file)`` in display order; the first sets the size.
        crops (list[dict]): Regions ``{x, y, size}`` to enlarge (fractions of the image side).

    Returns:
        PIL.Image.Image: RGB grid ``(LABEL_HEIGHT + H + len(crops) * (H + GAP)) x (n * W + (n - 1) * GAP)``.
    """
    images = [Image.open(path).convert('RGB') for _, path in panels]
    width, height = images[0].size
    images = [image if image.size == (width, height) else image.resize((width, height), Image.LANCZOS)
              for image in images]
    columns = len(images)
    canvas = Image.new('RGB', (columns * width + (columns - 1) * GAP,
                               LABEL_HEIGHT + height + len(crops) * (height + GAP)), 'white')
    draw, font = ImageDraw.Draw(canvas), _font()
    boxes = [crop_box(crop, width, height) for crop in crops]
    for column, ((label, _), image) in enumerate(zip(panels, images)):
        left = column * (width + GAP)
        draw.text((left + 4, 3), label, fill='black', font=font)
        canvas.paste(image, (left, LABEL_HEIGHT))
        for box, colour in zip(boxes, CROP_COLOURS * len(boxes)):
            draw.rectangle((left + box[0], LABEL_HEIGHT + box[1], left + box[2] - 1, LABEL_HEIGHT + box[3] - 1),
                           outline=colour, width=2)
        for row, (box, colour) in enumerate(zip(boxes, CROP_COLOURS * len(boxes))):
            zoomed = image.crop(box).resize((width, height), Image.NEAREST)
            top = LABEL_HEIGHT + height + GAP + row * (height + GAP)
            canvas.paste(zoomed, (left, top))
            draw.rectangle((left, top, left + width - 1, top + height - 1), outline=colour, width=2)
    return canvas


def save_image_whole(image, path):
    """Save a PIL image to ``path`` whole or not at all (the format follows ``path``'s extension)."""
    with atomic_output(path, suffix=Path(path).suffix) as tmp_name:
        image.save(tmp_name)
