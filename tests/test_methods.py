"""The method contract, for every registered method (and V-JEPA's tube masks): params
initialize, the loss is finite, a data 2 × fsdp 4 mesh gives the single device's losses, the
jitted step compiles once, and a saved state restores to the same loss. Plus the registry's
own rules: unknown names are errors naming ``objective``, and no module outside
``jepa/methods/`` compares the objective's name."""

import ast
import json
import os

import jax
import numpy as np
import pytest
import toy_method
from helpers import tiny_config, tiny_world_model_config, train_on_mesh
from test_cli import run
from test_future import tiny_future_config
from test_hierarchy import tiny_hierarchy_config
from test_step import multiview_config
from test_video import tiny_vjepa_config

from jepa import checkpointing, methods, optim, sharding, validation
from jepa import state as state_lib
from jepa.methods.base import Method

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def toy_config():
    return tiny_config(
        objective=toy_method.METHOD.name, **{"method.mlp.hidden": 32, "method.mlp.depth": 1}
    )


# One tiny config per method; a method registered without one fails test_every_method_has_a_case.
CASES = {
    "masked": tiny_config,
    "masked-tube": tiny_vjepa_config,
    "multiview": multiview_config,
    "future": lambda: tiny_future_config("", **{"method.latent.kind": "discrete"}),
    "hierarchy": tiny_hierarchy_config,
    "toy": toy_config,
    "world_model": tiny_world_model_config,
}
# The params layout checkpoints hold (it must not change for a method that exists).
PARTS = {
    "masked": {"encoder", "predictor"},
    "masked-tube": {"encoder", "predictor"},
    "multiview": {"encoder", "projector"},
    "future": {"encoder", "predictor", "latent", "reference"},
    "hierarchy": {"encoder", "predictor", "levels"},
    "toy": {"encoder", "predictor"},
    "world_model": {"encoder", "predictor", "idm"},
}


def leading(config) -> int:
    """Frames or views per sample in a 5-D ``image`` batch."""
    section = config.method
    return {
        "masked": lambda: config.model.num_frames,
        "multiview": lambda: section.num_views,
        "future": lambda: section.clip.context_frames + 1,
        "hierarchy": lambda: section.sequence.frames,
        "toy": lambda: 2,
    }[config.objective]()


def make_batch(config, step: int) -> dict:
    """Random images under every key the method's batch holds, plus what its host draws."""
    method = methods.of(config)
    rng = np.random.default_rng([step, 5])
    m, section = config.model, config.method
    frame = (m.image_size, m.image_size, m.channels)
    shapes = {}
    if "image" in method.batch_ndims(config):
        ndim = method.batch_ndims(config)["image"]
        shapes["image"] = frame if ndim == 4 else (leading(config), *frame)
    if "local_views" in section:
        shapes["local"] = (section.local_views, section.local_size, section.local_size, m.channels)
    batch = {
        key: rng.standard_normal((config.batch_size, *shapes[key])).astype(np.float32)
        for key in method.batch_ndims(config)
        if key in shapes
    }
    if method.step_inputs is not None:
        batch.update(method.step_inputs(config)(config.seed, step, config.batch_size))
    assert set(batch) == set(method.batch_ndims(config))
    return batch


def test_every_method_has_a_case():
    named = {CASES[case]().objective for case in CASES}
    assert set(methods.REGISTRY) <= named


@pytest.mark.parametrize("case", sorted(CASES))
def test_method_contract(case, tmp_path):
    config = CASES[case]()
    validation.validate(config, jax.device_count())
    method = methods.of(config)
    boxed = jax.eval_shape(
        lambda: method.init_params(config, jax.random.PRNGKey(0))
    )  # boxed, as state_shardings reads them
    assert set(boxed) == PARTS[case]

    single, *_ = train_on_mesh(CASES[case](), (1, 1, 1), make_batch, steps=2)
    config = CASES[case]()
    sharded, state, train_step, _ = train_on_mesh(config, (2, 4, 1), make_batch, steps=2)
    losses = [h["loss"] for h in single]
    assert np.all(np.isfinite(losses)) and not any(h["nonfinite"] for h in single)
    np.testing.assert_allclose([h["loss"] for h in sharded], losses, rtol=2e-5, atol=1e-6)
    assert train_step._cache_size() == 1  # two steps, one compilation

    # Save, restore into the same shardings: the same params and the same loss; the step runs
    # on the restored state without compiling again.
    mesh = sharding.make_mesh(config, jax.devices()[:8])
    tx = optim.make_optimizer(config)
    abstract, shardings = state_lib.state_shardings(config, tx, mesh, jax.random.PRNGKey(0))
    ckpt = checkpointing.Checkpointer(str(tmp_path), async_save=False)
    ckpt.save(2, state, None, config, force=True)
    restored = ckpt.restore_state(2, checkpointing.with_shardings(abstract, shardings))
    ckpt.close()
    assert int(restored.step) == 2
    batch = sharding.global_batch(make_batch(config, 2), mesh)
    loss_fn = jax.jit(method.make_loss_fn(config))
    with jax.set_mesh(mesh):
        saved_loss = loss_fn(state.params, state.target_params, batch, 2)[0]
        restored_loss = loss_fn(restored.params, restored.target_params, batch, 2)[0]
        _, metrics = train_step(restored, batch)
    assert float(restored_loss) == float(saved_loss)
    np.testing.assert_allclose(float(metrics["loss"]), float(saved_loss), rtol=1e-6)
    assert train_step._cache_size() == 1


@pytest.mark.slow
def test_a_method_defined_outside_trains_and_probes_from_the_command_line(tmp_path, mnist_data_dir):
    """The toy method's experiment file registers it for jepa-train; the stored config's
    ``method_file`` lets jepa-eval load its encoder and probe it."""
    workdir = str(tmp_path / "toy")
    experiment = f"tests/toy_method_experiment.py:data_dir={mnist_data_dir},steps=4"
    out = run(["-m", "jepa.main", "--config", experiment, "--workdir", workdir])
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) and r["vicreg_var"] >= 0 for r in rows)

    ev = run(["-m", "jepa.evaluate.main", "--workdir", workdir, "--protocol", "linear"])
    assert ev.returncode == 0, ev.stderr[-3000:]
    result = json.loads(ev.stdout.strip().splitlines()[-1])
    assert (result["protocol"], result["step"], result["weights"]) == ("linear", 4, "target")
    assert result["top1"] > 20.0  # chance is 10 %


def test_unknown_objective_names_the_key_and_the_methods():
    with pytest.raises(ValueError, match=r"objective='contrastive'; valid: .*'multiview'"):
        methods.get("contrastive")


def test_a_method_registered_outside_the_package_is_found():
    def fail(config, *args):
        raise AssertionError("not called")

    registered = methods.register(Method("outside", fail, fail, fail))
    try:
        assert methods.get("outside") is registered
        assert methods.of(tiny_config(objective="outside")) is registered
    finally:
        del methods.REGISTRY["outside"]


def test_the_method_file_is_imported_when_its_method_is_looked_up(tmp_path):
    """What jepa-eval and load_encoder rely on: a stored config names the file that registers
    its method, and the lookup imports it."""
    path = tmp_path / "late_method.py"
    path.write_text(
        "from jepa import methods\n"
        "from jepa.methods.base import Method\n"
        "METHOD = methods.register(Method('late', None, None, None))\n"
    )
    config = tiny_config(objective="late", method_file=str(path))
    try:
        assert methods.of(config).name == "late"
    finally:
        methods.REGISTRY.pop("late", None)
    with pytest.raises(ValueError, match="method_file="):
        methods.of(tiny_config(objective="late", method_file=str(tmp_path / "absent.py")))


def objective_comparisons(path: str) -> list[str]:
    """``x.objective ==/!=/in …`` comparisons and method names as string constants (docstrings
    and the base config's default value aside) in one source file."""
    names = set(methods.REGISTRY)
    tree = ast.parse(open(path).read())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    default = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and path.endswith(os.path.join("jepa", "config.py"))
        and any(isinstance(t, ast.Attribute) and t.attr == "objective" for t in node.targets)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Attribute) and s.attr == "objective" for s in sides):
                found.append(f"{path}:{node.lineno}: compares the objective")
        elif (
            isinstance(node, ast.Constant)
            and node.value in names
            and id(node) not in docstrings | default
        ):
            found.append(f"{path}:{node.lineno}: {node.value!r}")
    return found


def test_no_module_outside_the_methods_names_one():
    found = []
    for folder, _, files in os.walk(os.path.join(ROOT, "jepa")):
        if os.path.join("jepa", "methods") in folder:
            continue
        for name in files:
            if name.endswith(".py"):
                found += objective_comparisons(os.path.join(folder, name))
    assert not found, "\n".join(found)
