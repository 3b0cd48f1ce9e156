"""Third-party BasicSR plugins are imported through the ``basicsr.plugins`` entry-point group."""
import os
import textwrap

from helpers.runs import REPO, run_cli
from restorevar_plugin.cli import load_plugins


def test_our_distribution_declares_itself():
    assert 'restorevar_plugin' in load_plugins()


def test_installed_third_party_plugin_is_registered(tmp_path):
    site = tmp_path / 'site'
    (site / 'toy_plugin').mkdir(parents=True)
    (site / 'toy_plugin' / '__init__.py').write_text(textwrap.dedent('''
        import torch
        from basicsr.utils.registry import ARCH_REGISTRY


        @ARCH_REGISTRY.register()
        class ToyPluginIdentityNet(torch.nn.Identity):
            """Registered only when the entry point is loaded."""
    '''))
    dist_info = site / 'toy_plugin-0.0.1.dist-info'
    dist_info.mkdir()
    (dist_info / 'METADATA').write_text('Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.0.1\n')
    (dist_info / 'entry_points.txt').write_text('[basicsr.plugins]\ntoy_plugin = toy_plugin\n')
    env = {'PYTHONPATH': os.pathsep.join([str(site), os.environ.get('PYTHONPATH', '')])}
    with_plugin = run_cli(['list', 'arch'], cwd=REPO, env=env)
    assert with_plugin.returncode == 0, with_plugin.stderr
    assert 'ToyPluginIdentityNet' in with_plugin.stdout
    without_plugin = run_cli(['list', 'arch'], cwd=REPO)
    assert 'ToyPluginIdentityNet' not in without_plugin.stdout
