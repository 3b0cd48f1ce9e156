"""``basicsr benchmark``: tables, resume, missing weights, cost counting, ablation overrides."""
import hashlib
import re
import shutil

import pytest
import torch
import yaml
from basicsr.archs import build_network

from helpers.runs import REPO
from restorevar_plugin.benchmark.cost import (
    MEMORY_DEFINITION,
    ParameterUse,
    count_flops,
    count_model_cost,
    latent_diffusion_reference,
)
from restorevar_plugin.benchmark.options import apply_override, load_benchmark_options
from restorevar_plugin.benchmark.pipeline import run_benchmark
from restorevar_plugin.benchmark.tables import COST_COLUMNS, DECIMALS, read_csv_without_comments
from restorevar_plugin.checkpoints import CHECKPOINTS
from restorevar_plugin.cli import main
from restorevar_plugin.harness import OptionError
from restorevar_plugin.models.restoration_model import RestorationModel

pytest_plugins = ['helpers.pretrained']

RRDB = {'type': 'RRDBNet', 'num_in_ch': 3, 'num_out_ch': 3, 'scale': 1, 'num_feat': 8, 'num_block': 1,
        'num_grow_ch': 4}
EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 1}
IMAGES = {'haze': 2, 'rain_snow': 4}  # SyntheticDegradationDataset val split: 2 clean images x degradations


def save_random_weights(network_opt, path, seed):
    """A random-init network of ``network_opt`` saved in BasicSR's ``params`` layout."""
    torch.manual_seed(seed)
    network = build_network(dict(network_opt))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'params': network.state_dict()}, path)
    return path


def restoration_method(label, network_opt, weights):
    return {'label': label, 'model': {'model_type': 'RestorationModel', 'scale': 1, 'network_g': network_opt},
            'path': {'pretrain_network_g': weights}}


def benchmark_options(name, images_per_dataset=1):
    """Two tiny methods, one with missing official weights, two tiny synthetic datasets."""
    return {
        'name': name,
        'device': 'cpu',
        'protocol': {'name': 'restorevar_paper', 'metrics': ['psnr', 'ssim']},
        'methods': [
            restoration_method('RRDB tiny', RRDB, 'pretrained/rrdb.pth'),
            restoration_method('EDSR tiny', EDSR, 'pretrained/edsr.pth'),
            dict(restoration_method('Absent', EDSR, 'pretrained/restorevar.pth'),
                 paper={'time_s': 0.201, 'source': 'RestoreVAR paper Table 5'}),
        ],
        'datasets': {
            'test_1': {'name': 'haze', 'type': 'SyntheticDegradationDataset', 'degradations': ['haze'], 'size': 32,
                       'seed': 0},
            'test_2': {'name': 'rain_snow', 'type': 'SyntheticDegradationDataset', 'degradations': ['rain', 'snow'],
                       'size': 32, 'seed': 1},
        },
        'grids': {'images_per_dataset': images_per_dataset, 'crops': [{'x': 0.25, 'y': 0.25, 'size': 0.3}]},
        'cost': {'ldm_reference': False, 'warmup': 1},
    }


@pytest.fixture
def bench_root(tmp_path):
    root = tmp_path / 'root'
    save_random_weights(RRDB, root / 'pretrained' / 'rrdb.pth', 0)
    save_random_weights(EDSR, root / 'pretrained' / 'edsr.pth', 1)
    return root


def write_yaml(path, options):
    path.write_text(yaml.safe_dump(options, sort_keys=False))
    return path


@pytest.fixture
def count_tests(monkeypatch):
    """Counts ``RestorationModel.test`` calls (every restoration of an image batch)."""
    calls = []
    original = RestorationModel.test

    def counted(self):
        calls.append(self.opt['name'])
        return original(self)

    monkeypatch.setattr(RestorationModel, 'test', counted)
    return calls


def markdown_tables(text):
    """``{title: (header cells, metric cells, {method: cells})}`` of the quality tables in a markdown file."""
    tables = {}
    for block in re.split(r'^## ', text, flags=re.M)[1:]:
        title, body = block.split('\n', 1)
        lines = [line for line in body.splitlines() if line.startswith('|')]
        cells = [[cell.strip() for cell in line.strip('|').split('|')] for line in lines]
        tables[title.strip()] = (cells[0][1:], cells[2][1:], {row[0].strip('*'): row[1:] for row in cells[3:]})
    return tables


def plain(cell):
    return re.sub(r'\*\*|</?u>', '', cell)


PEAK = 'peak_memory_per_image_MiB'


def cost_markdown_cells(text):
    """``{method: {CSV field: printed cell}}`` of the cost table in ``cost.md``."""
    lines = [line for line in text.splitlines() if line.startswith('|')]
    headers = [cell.strip() for cell in lines[0].strip('|').split('|')]
    fields = {header: name for name, header, _ in COST_COLUMNS}
    cells = {}
    for line in lines[2:]:
        row = dict(zip((fields[header] for header in headers), (cell.strip() for cell in line.strip('|').split('|'))))
        cells[row['method']] = row
    return cells


def test_benchmark_tables_missing_weights_and_provenance(bench_root, count_tests, capfd):
    option_file = write_yaml(bench_root / 'bench.yml', benchmark_options('two_by_two'))
    code = main(['benchmark', '-opt', str(option_file), '--root', str(bench_root)])
    assert code == 1  # one method is missing its weights; the others ran
    progress = capfd.readouterr().err
    assert 'profiler_st' not in progress  # the memory profiler's native start / stop banners are silenced
    for method in ('RRDB tiny', 'EDSR tiny', 'degraded input'):  # one progress bar per method and dataset
        for dataset, images in IMAGES.items():
            assert re.search(rf'{method} \| {dataset}: 100%.* {images}/{images} ', progress), (method, dataset)
    results = bench_root / 'results' / 'two_by_two'
    markdown = (results / 'quality.md').read_text()
    tables = markdown_tables(markdown)
    title = 'Table 1: full-reference quality (paper Table 1 shape)'
    datasets, metrics, rows = tables[title]
    assert datasets == ['haze', 'haze', 'rain_snow', 'rain_snow']
    assert metrics == ['PSNR (dB) ↑', 'SSIM ↑', 'PSNR (dB) ↑', 'SSIM ↑']
    assert list(rows) == ['RRDB tiny', 'EDSR tiny', 'Absent', 'degraded input']
    assert rows['Absent'] == ['missing'] * 4
    csv_rows = read_csv_without_comments(results / 'quality.csv')
    assert len(csv_rows) == 3 * 4  # two methods and the input row, two datasets x two metrics
    columns = list(zip(datasets, [metric.split(' ')[0] for metric in metrics]))
    for row in csv_rows:
        cell = rows[row['method']][columns.index((row['dataset'], row['metric']))]
        assert plain(cell) == f'{float(row["value"]):.{DECIMALS[row["metric"]]}f}'
        assert int(row['images']) == IMAGES[row['dataset']]
    for index, (dataset, metric) in enumerate(columns):
        scores = {row['method']: round(float(row['value']), DECIMALS[metric]) for row in csv_rows
                  if (row['dataset'], row['metric']) == (dataset, metric) and row['method'] != 'degraded input'}
        best, second = sorted(scores, key=scores.get, reverse=True)
        assert rows[best][index].startswith('**') and rows[second][index].startswith('<u>')
        assert not rows['degraded input'][index].startswith(('**', '<u>'))
    protocol_line = load_benchmark_options(option_file, bench_root).protocol.describe()
    assert protocol_line in markdown.split(title)[1]
    assert protocol_line in (results / 'quality.csv').read_text()
    assert "Checkpoint 'restorevar.pth' not found: looked for " in markdown
    assert 'RestoreVAR README' in markdown  # where to get the official file
    for name in ('rrdb.pth', 'edsr.pth'):
        digest = hashlib.sha256((bench_root / 'pretrained' / name).read_bytes()).hexdigest()
        for output in ('quality.md', 'quality.csv', 'cost.md', 'cost.csv', 'report.html'):
            assert f'{name} sha256 {digest}' in (results / output).read_text()
    provenance = ('restorevar_plugin: ', 'git commit: ', 'option file: ', 'device: cpu', 'threads: ', 'torch: ',
                  'python: ', 'date: ')
    for output in ('quality.md', 'quality.csv', 'cost.md', 'cost.csv', 'report.html'):
        text = (results / output).read_text()
        assert all(key in text for key in provenance), output
    assert '# torch: ' in (results / 'cost.csv').read_text()
    assert '# option file: ' in (results / 'quality.csv').read_text()
    cost = {row['method']: row for row in read_csv_without_comments(results / 'cost.csv')}
    assert cost['Absent']['networks'] == 'missing' and cost['Absent']['paper_time_s'] == '0.201'
    assert float(cost['RRDB tiny']['TFLOPs_per_image']) > 0 and cost['RRDB tiny']['resolution'] == '32x32'
    assert int(cost['EDSR tiny']['timed_images']) == sum(IMAGES.values()) - 1  # after one warm-up image
    printed = cost_markdown_cells((results / 'cost.md').read_text())
    for method in ('RRDB tiny', 'EDSR tiny'):  # measured on CPU, the same number in the CSV and the markdown
        assert float(cost[method][PEAK]) > 0
        assert printed[method][PEAK] == f'{float(cost[method][PEAK]):.1f}'
    assert cost['Absent'][PEAK] == '' and printed['Absent'][PEAK] == 'missing'
    for output in ('cost.md', 'cost.csv', 'report.html'):  # the column's definition travels with it
        assert MEMORY_DEFINITION in (results / output).read_text().replace('&#x27;', "'")
    # images scored + 1 per chosen picture (one per dataset) + 1 counted for FLOPs, for each method that ran
    assert len(count_tests) == 2 * (sum(IMAGES.values()) + len(IMAGES) + 1)
    grid = results / 'grids' / 'haze'
    assert len(list(grid.glob('*.png'))) == 1
    from PIL import Image

    width, height = Image.open(next(grid.glob('*.png'))).size
    assert width == 4 * 32 + 3 * 4  # input, two methods, GT with 4 px gaps
    assert height == 22 + 2 * 32 + 4  # label strip, image, one zoomed crop row


@pytest.fixture
def iqa_home(alexnet_torch_home, empty_torch_home, no_network):
    """A TORCH_HOME with random-init LPIPS backbone and MUSIQ files (pyiqa's layout); network forbidden."""
    import pyiqa

    hub = empty_torch_home
    for key in ('lpips_alex', 'musiq'):
        info = CHECKPOINTS[key]
        (hub / info.hub_subdir).mkdir(parents=True, exist_ok=True)
    alex = CHECKPOINTS['lpips_alex']
    shutil.copy(alexnet_torch_home / 'hub' / alex.hub_subdir / alex.filename, hub / alex.hub_subdir / alex.filename)
    torch.manual_seed(0)
    musiq = pyiqa.create_metric('musiq', device='cpu', pretrained=False)
    torch.save(musiq.net.state_dict(), hub / CHECKPOINTS['musiq'].hub_subdir / CHECKPOINTS['musiq'].filename)
    return hub


def test_table1_lpips_lower_is_better_and_table2_no_reference(bench_root, iqa_home):
    options = benchmark_options('tables', images_per_dataset=0)
    options['methods'] = options['methods'][:2]
    options['datasets']['test_2']['degradations'] = ['rain']  # 2 images per dataset (MUSIQ is slow on CPU)
    options['protocol'] = {'name': 'restorevar_paper', 'metrics': ['psnr', 'lpips', 'musiq'],
                           'no_reference_on_paired': True}
    option_file = write_yaml(bench_root / 'bench.yml', options)
    results, _ = run_benchmark(option_file, bench_root)
    markdown = (results / 'quality.md').read_text()
    tables = markdown_tables(markdown)
    datasets, metrics, rows = tables['Table 1: full-reference quality (paper Table 1 shape)']
    assert metrics == ['PSNR (dB) ↑', 'LPIPS ↓'] * 2
    datasets, metrics, rows = tables['Table 2: no-reference quality (paper Table 2 shape)']
    assert datasets == ['haze', 'rain_snow', 'Average'] and metrics == ['MUSIQ ↑'] * 3
    assert list(rows) == ['RRDB tiny', 'EDSR tiny', 'degraded input']
    csv_rows = read_csv_without_comments(results / 'quality.csv')
    value = {(row['table'], row['method'], row['dataset'], row['metric']): float(row['value']) for row in csv_rows}
    for method in rows:
        average = (value[('table2', method, 'haze', 'MUSIQ')] + value[('table2', method, 'rain_snow', 'MUSIQ')]) / 2
        assert value[('table2', method, 'Average', 'MUSIQ')] == pytest.approx(average)
    lpips = {method: round(value[('table1', method, 'haze', 'LPIPS')], 3) for method in ('RRDB tiny', 'EDSR tiny')}
    table1_rows = tables['Table 1: full-reference quality (paper Table 1 shape)'][2]
    for method, score in lpips.items():  # lower is better: the smaller LPIPS is bold
        assert table1_rows[method][1].startswith('**') == (score == min(lpips.values()))
    assert 'No-reference metrics musiq measured on every image' in markdown


def test_benchmark_resumes_from_cached_rows(bench_root, count_tests, monkeypatch):
    options = benchmark_options('resume', images_per_dataset=0)
    options['methods'] = options['methods'][:2]
    option_file = write_yaml(bench_root / 'bench.yml', options)
    original = RestorationModel.test
    budget = {'left': 4}

    def interrupted(self):
        if budget['left'] == 0:
            raise KeyboardInterrupt
        budget['left'] -= 1
        return original(self)

    monkeypatch.setattr(RestorationModel, 'test', interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(option_file, bench_root)
    cache = bench_root / 'results' / 'resume' / 'cache' / 'RRDB_tiny'
    cached = sum(len((cache / f'{name}.jsonl').read_text().splitlines()) - 1 for name in IMAGES)
    assert cached == 3  # four restorations: the FLOP count (first, cached in cost.json), then three images
    with open(cache / 'rain_snow.jsonl', 'a', encoding='utf-8') as handle:
        handle.write('{"image": "cut sh')  # a row an interruption cut short: ignored, recomputed
    calls = []

    def counted(self):
        calls.append(self.opt['name'])
        return original(self)

    monkeypatch.setattr(RestorationModel, 'test', counted)
    _, results = run_benchmark(option_file, bench_root)
    total = sum(IMAGES.values())
    assert calls.count('resume_RRDB_tiny') == total - cached  # only the images it had not scored
    assert calls.count('resume_EDSR_tiny') == total + 1
    assert [len(evaluation.rows) for evaluation in results[0].evaluations.values()] == list(IMAGES.values())
    first_means = {name: evaluation.means for name, evaluation in results[0].evaluations.items()}
    calls.clear()
    _, again = run_benchmark(option_file, bench_root)
    assert calls == []  # everything came from the cache
    assert {name: evaluation.means for name, evaluation in again[0].evaluations.items()} == first_means
    options['methods'][0]['force_yml'] = ['manual_seed=5']  # a changed method is recomputed
    write_yaml(option_file, options)
    run_benchmark(option_file, bench_root)
    assert calls.count('resume_RRDB_tiny') == total + 1 and 'resume_EDSR_tiny' not in calls


def test_restorevar_ablations_are_overrides(tmp_path):
    """RestoreVAR, without refiner and with another decoder from one option file; 4 scales -> 4 evaluations."""
    root = tmp_path / 'root'
    model_opt = yaml.safe_load((REPO / 'options' / 'demo' / 'restorevar_test.yml').read_text())
    weights = {key: save_random_weights(model_opt[f'network_{key}'], root / 'pretrained' / f'{key}.pth', seed)
               for seed, key in enumerate(('vqvae', 'g', 'refiner'))}
    save_random_weights(model_opt['network_vqvae'], root / 'pretrained' / 'original_vqvae.pth', 7)
    path = {f'pretrain_network_{key}': str(value) for key, value in weights.items()}
    demo_file = str(REPO / 'options' / 'demo' / 'restorevar_test.yml')
    options = {
        'name': 'ablations', 'device': 'cpu', 'protocol': {'name': 'restorevar_paper', 'metrics': ['psnr']},
        'methods': [
            {'label': 'RestoreVAR', 'opt': demo_file, 'path': path},
            {'label': 'w/o refiner', 'opt': demo_file, 'path': path, 'force_yml': ['val:use_refiner=false']},
            {'label': 'original decoder', 'opt': demo_file, 'path': path,
             'force_yml': ['path:pretrain_decoder=pretrained/original_vqvae.pth']},
        ],
        'datasets': {'test_1': {'name': 'haze', 'type': 'SyntheticDegradationDataset', 'degradations': ['haze'],
                                'size': 32, 'seed': 0}},
        'cost': {'ldm_reference': False},
    }
    option_file = write_yaml(root / 'bench.yml', options)
    _, results = run_benchmark(option_file, root)
    full, no_refiner, decoder = (result.cost for result in results[:3])
    assert full.evaluations == no_refiner.evaluations == 4  # patch_nums [1, 2, 4, 8]
    assert full.networks['net_refiner'][1] == full.networks['net_refiner'][0] > 0
    assert no_refiner.networks['net_refiner'][1] == 0 and no_refiner.flops < full.flops
    vqvae_total, _ = decoder.networks['net_decoder']
    assert 0 < decoder.networks['net_decoder'][1] < vqvae_total  # only the swapped-in decoder ran
    assert decoder.flops == full.flops
    psnr = [result.evaluations['haze'].means['psnr'] for result in results[:3]]
    assert len(set(psnr)) == 3
    assert [result.checkpoints[-1].endswith('original_vqvae.pth') for result in results[:3]] == [False, False, True]


def test_flop_count_of_a_small_network_equals_the_hand_count():
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                  torch.nn.Linear(8 * 16 * 16, 10))
    _, flops = count_flops(network, torch.rand(1, 3, 16, 16))
    conv_macs = 16 * 16 * 8 * (3 * 3 * 3)
    linear_macs = 8 * 16 * 16 * 10
    assert flops == 2 * (conv_macs + linear_macs)
    query = torch.rand(1, 2, 16, 8)  # CPU attention: Q K^T and A V, each 16 x 16 x 8 multiply-adds per head
    _, flops = count_flops(torch.nn.functional.scaled_dot_product_attention, query, query, query)
    assert flops == 2 * 2 * (2 * 16 * 16 * 8)


def test_parameters_read_by_any_operation_are_counted_as_run():
    used, unused = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    codebook = torch.nn.Parameter(torch.rand(10, 4))  # read by indexing and F.linear, never by a module call
    with ParameterUse([*used.parameters(), *unused.parameters(), codebook]) as use:
        used(torch.rand(2, 4)) + torch.nn.functional.linear(codebook[torch.tensor([1, 2])], used.weight)
    assert use.used == {id(used.weight), id(used.bias), id(codebook)}


class OneNetworkModel:
    """The part of a BasicSR model the cost counting uses (``net_g``, ``feed_data``, ``test``) around a network."""

    def __init__(self, network):
        self.net_g = network.eval()

    def get_bare_model(self, network):
        return network

    def feed_data(self, data):
        self.lq = data['lq']

    def test(self):
        with torch.no_grad():
            self.output = self.net_g(self.lq)


def widening_network(channels):
    """``(1, 3, H, W) -> (1, channels, H, W) -> (1, 3, H, W)`` by two 1x1 convolutions."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, channels, 1), torch.nn.Conv2d(channels, 3, 1))


@pytest.fixture
def one_thread():
    """One intra-op thread for the test (oneDNN convolutions on several threads may add a reordered copy of the
    output, real memory that the measurement counts), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_peak_memory_on_cpu_counts_the_largest_intermediate_not_the_weights(one_thread):
    batch = {'lq': torch.rand(1, 3, 256, 256)}  # one float32 channel at 256 x 256 is 0.25 MiB
    wide = count_model_cost(OneNetworkModel(widening_network(256)), batch, 'cpu')  # a 64 MiB intermediate
    narrow = count_model_cost(OneNetworkModel(widening_network(16)), batch, 'cpu')  # a 4 MiB intermediate
    output = 0.75  # the (1, 3, 256, 256) result, held by the model after test()
    assert 64 <= wide.peak_memory_mib <= 64 + 2 * output + 1
    assert 4 <= narrow.peak_memory_mib <= 4 + 2 * output + 1
    heavy = count_model_cost(OneNetworkModel(torch.nn.Linear(4096, 4096)), {'lq': torch.rand(1, 4096)}, 'cpu')
    assert heavy.params == 4096 * 4097  # 64 MiB of weights, held before the image: not part of its peak
    assert 0 < heavy.peak_memory_mib < 1


def test_sd15_unet_reference_count():
    one_step, twenty = latent_diffusion_reference(steps=20, size=512)
    assert abs(one_step.flops / 0.803e12 - 1) < 0.01
    assert one_step.params == 859_520_964
    assert twenty.flops == 20 * one_step.flops and twenty.evaluations == 20
    assert twenty.paper['tflops'] == 16.08


def test_option_errors_name_the_option(bench_root):
    options = benchmark_options('errors')
    options['methods'][0]['force_yml'] = ['train:total_iter=3']
    option_file = write_yaml(bench_root / 'bench.yml', options)
    with pytest.raises(OptionError, match=r'methods\[0\] \(RRDB tiny\)\.force_yml: .*option train does not exist'):
        load_benchmark_options(option_file, bench_root)
    options['methods'][0].pop('force_yml')
    options['protocol'] = {'name': 'restorevar_paper', 'metrics': ['fid']}
    write_yaml(option_file, options)
    with pytest.raises(OptionError, match='protocol.metrics'):
        load_benchmark_options(option_file, bench_root)
    options['protocol'] = 'restorevar_paper'
    options['methods'][1]['label'] = 'RRDB tiny'
    write_yaml(option_file, options)
    with pytest.raises(OptionError, match='labels must differ'):
        load_benchmark_options(option_file, bench_root)
    spec = load_benchmark_options(option_file, bench_root, ['methods:1:label=EDSR', 'grids:images_per_dataset=3'])
    assert [method.label for method in spec.methods][:2] == ['RRDB tiny', 'EDSR'] and spec.images_per_dataset == 3


def test_override_values_follow_basicsr_parsing():
    options = {'val': {'use_refiner': True, 'metrics': {}}, 'path': {}}
    for entry in ('val:use_refiner=false', 'path:pretrain_decoder=pretrained/x.pth', 'val:size=[1, 2]',
                  'val:lr=!!float 1e-4', 'path:none_key=~'):
        apply_override(options, entry, 'test')
    assert options == {'val': {'use_refiner': False, 'metrics': {}, 'size': [1, 2], 'lr': 1e-4},
                       'path': {'pretrain_decoder': 'pretrained/x.pth', 'none_key': None}}


CHROME_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                '--disable-component-update', '--disable-sync', '--no-first-run', '--window-size=1400,1000')


def headless_chromium(profile_dir):
    """Selenium driving the system Chromium (Debian packages chromium + chromium-driver), console logs kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = shutil.which('chromium'), shutil.which('chromedriver')
    assert browser and driver, 'the report test needs the Debian packages chromium and chromium-driver (see .ci/run)'
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROME_FLAGS + (f'--user-data-dir={profile_dir}',):
        options.add_argument(flag)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    return webdriver.Chrome(service=Service(driver), options=options)


def test_report_in_a_headless_browser(bench_root, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    option_file = write_yaml(bench_root / 'bench.yml', benchmark_options('browser', images_per_dataset=1))
    results, _ = run_benchmark(option_file, bench_root)
    driver = headless_chromium(tmp_path / 'chromium_profile')
    try:
        driver.get((results / 'report.html').as_uri())
        severe = [entry for entry in driver.get_log('browser') if entry['level'] == 'SEVERE']
        assert severe == []
        for row in read_csv_without_comments(results / 'quality.csv'):
            cell = driver.find_element(By.CSS_SELECTOR, f'#{row["table"]} td[data-method="{row["method"]}"]'
                                       f'[data-dataset="{row["dataset"]}"][data-metric="{row["metric"]}"]')
            assert cell.text == f'{float(row["value"]):.{DECIMALS[row["metric"]]}f}'
        header = driver.find_elements(By.CSS_SELECTOR, '#table1 th')[1]  # haze PSNR
        header.click()
        methods = [row.find_elements(By.TAG_NAME, 'td')[0].text
                   for row in driver.find_elements(By.CSS_SELECTOR, '#table1 tbody tr')]
        values = [float(row['value']) for row in read_csv_without_comments(results / 'quality.csv')
                  if (row['dataset'], row['metric']) == ('haze', 'PSNR')]
        by_method = {row['method']: float(row['value']) for row in read_csv_without_comments(results / 'quality.csv')
                     if (row['dataset'], row['metric']) == ('haze', 'PSNR')}
        assert [by_method[method] for method in methods if method in by_method] == sorted(values)
        for row in read_csv_without_comments(results / 'cost.csv'):  # the cost table holds the CSV's numbers
            if row[PEAK]:
                cell = driver.find_element(By.XPATH, f'//table[@id="cost"]//tr[td[1]="{row["method"]}"]'
                                           f'/td[@data-field="{PEAK}"]')
                assert float(cell.get_attribute('data-value')) == float(row[PEAK])
                assert cell.text == f'{float(row[PEAK]):.1f}'
        viewer = driver.find_element(By.CSS_SELECTOR, '.viewer')
        image = viewer.find_element(By.TAG_NAME, 'img')
        assert image.get_attribute('src').endswith('/input.png')
        loaded = 'return arguments[0].complete && arguments[0].naturalWidth'
        shown = []
        for button in viewer.find_elements(By.TAG_NAME, 'button'):
            button.click()
            shown.append(image.get_attribute('src').rsplit('/', 1)[1])
            # the picture loads (the file exists) at full resolution
            assert WebDriverWait(driver, 20).until(lambda driver: driver.execute_script(loaded, image)) == 32
        assert shown == ['input.png', 'RRDB_tiny.png', 'EDSR_tiny.png', 'gt.png']
        assert viewer.find_element(By.CSS_SELECTOR, '.shown').text == 'GT'
        driver.find_element(By.TAG_NAME, 'body').send_keys(Keys.ARROW_RIGHT)
        assert image.get_attribute('src').endswith('/input.png')  # wraps around
        driver.find_element(By.TAG_NAME, 'body').send_keys('2')
        assert image.get_attribute('src').endswith('/RRDB_tiny.png')
        Select(viewer.find_element(By.CSS_SELECTOR, 'select.zoom')).select_by_value('4')
        assert image.size['width'] == 4 * 32  # enlarged 4x
        assert [entry for entry in driver.get_log('browser') if entry['level'] == 'SEVERE'] == []
    finally:
        driver.quit()
