"""Sampler states as file arrays and back (bnn_sgmcmc.states), on small hand-made states and runs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnn_sgmcmc import h5io, sampling, states


class Carried(NamedTuple):
    """A kernel state that is more than its weights, as sghmc_persistent's or sgnht's."""

    position: Any
    momentum: Any
    xi: Any


def carried(chains: int = 2) -> Carried:
    weights = {"Dense_0": {"kernel": jnp.arange(chains * 6, dtype=jnp.float32).reshape(chains, 3, 2),
                           "bias": jnp.ones((chains, 2), jnp.float32)}}
    return Carried(weights, jax.tree.map(lambda a: -a, weights), jnp.full((chains,), 0.5, jnp.float32))


def run(chains=(0, 1), warmup_steps=10, sampling_steps=8, state=None, position=lambda s: s.position):
    """The parts of an experiment.Setup that the conversions read (states.RunSetup)."""
    state = carried(len(chains)) if state is None else state
    return SimpleNamespace(
        chains=list(chains),
        keys=sampling.chain_keys(0, "s", list(chains)),
        plan=sampling.StepPlan(batch_size=4, batching="replacement", warmup_steps=warmup_steps,
                               sampling_steps=sampling_steps, eval_every=2, thinning=1),
        eval_sets={},
        num_classes=3,
        kernel=SimpleNamespace(position=position),
        grad_evals=lambda steps, phase="warmup": np.asarray(steps, np.int64) * 3,
        initial_state=lambda positions=None: state,
    )


# --------------------------------------------------------------------------- a kernel's state


def test_a_named_tuple_state_becomes_groups_and_comes_back_as_it_was():
    state = carried()
    tree = states.state_tree(state)
    assert set(tree) == {"position", "momentum", "xi"}
    assert set(h5io._flatten(tree)) == {"position/Dense_0/kernel", "position/Dense_0/bias", "momentum/Dense_0/kernel",
                                        "momentum/Dense_0/bias", "xi"}
    assert all(isinstance(a, np.ndarray) for a in jax.tree.leaves(tree))
    back = states.state_from_tree(jax.eval_shape(lambda: state), tree)
    assert type(back) is Carried
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.pop("momentum"), r"^state/momentum is missing$"),
    (lambda t: t["position"]["Dense_0"].pop("bias"), r"^state/position/Dense_0/bias is missing$"),
    (lambda t: t["position"]["Dense_0"].update(kernel=np.zeros((2, 3, 1), np.float32)),
     r"^state/position/Dense_0/kernel is float32\[2, 3, 1\], expected float32\[2, 3, 2\]$"),
    (lambda t: t.update(xi=np.zeros(2, np.float64)), r"^state/xi is float64\[2\], expected float32\[2\]$"),
])
def test_an_array_that_does_not_fit_the_template_is_named(change, message):
    template = jax.eval_shape(carried)
    tree = states.state_tree(carried())
    change(tree)
    with pytest.raises(ValueError, match=message):
        states.state_from_tree(template, tree)


def test_the_first_mismatch_is_named_in_the_templates_order():
    tree = states.state_tree(carried())
    tree["momentum"]["Dense_0"]["bias"] = np.zeros((2, 1), np.float32)
    tree.pop("xi")
    with pytest.raises(ValueError, match=r"^state/momentum/Dense_0/bias is float32\[2, 1\]"):
        states.state_from_tree(jax.eval_shape(carried), tree)


def write_warmup(path, chains: list[int], state: Any) -> str:
    h5io.write_arrays(path, {"state": states.state_tree(state), "chain": np.asarray(chains, np.int64)}, {})
    return str(path)


def test_warmup_positions_give_chain_c_the_weights_of_the_files_chain_c_mod_their_number(tmp_path):
    """Files of chains [1] and [0] (out of order, any kernel's state): chains 0..4 start where 0, 1, 0, 1, 0 ended."""
    ended = {c: carried(1)._replace(position=jax.tree.map(lambda a, c=c: a + 100 * c, carried(1).position))
             for c in (0, 1)}
    paths = [write_warmup(tmp_path / "one.h5", [1], ended[1]),
             write_warmup(tmp_path / "zero.h5", [0], ended[0].position)]  # a kernel whose state is its weights
    chains = [0, 1, 2, 3, 4]
    positions = states.warmup_positions(paths, run(chains))
    for chain in chains:
        np.testing.assert_array_equal(positions["Dense_0"]["kernel"][chain], ended[chain % 2].position["Dense_0"]["kernel"][0])
    assert positions["Dense_0"]["kernel"].shape == (5, 3, 2)


# --------------------------------------------------------------------------- checkpoints


def checkpoint(chains=(0, 1), step=6, trace_steps=(2, 4, 6), num_samples=None):
    attrs = {"step": step} | ({} if num_samples is None else {"num_samples": num_samples})
    key = "step" if num_samples is None else "sample_step"
    return {"chain": np.asarray(chains), "trace": {key: np.asarray(trace_steps)}}, attrs


@pytest.mark.parametrize("phase", ["warmup", "sampling"])
def test_a_checkpoint_that_fits_the_run_passes(phase):
    arrays, attrs = checkpoint(num_samples=3 if phase == "sampling" else None)
    states.check_checkpoint(arrays, attrs, run(), phase)


@pytest.mark.parametrize("change, phase, message", [
    (dict(chains=(0, 2)), "warmup", r"^it holds chains \[0, 2\], this job runs \[0, 1\]$"),
    (dict(step=10), "warmup", r"^its step 10 is outside the warmup phase's 1\.\.9$"),
    (dict(step=0, trace_steps=()), "warmup", r"^its step 0 is outside the warmup phase's 1\.\.9$"),
    (dict(step=8, num_samples=2), "sampling", r"^its step 8 is outside the sampling phase's 1\.\.7$"),
    (dict(step=4), "warmup", r"^its trace steps do not end at or before its step 4$"),
    (dict(trace_steps=(2, 2, 4)), "warmup", r"^its trace steps do not end at or before its step 6$"),
    (dict(num_samples=7), "sampling", r"^its 7 kept samples do not fit in 6 steps$"),
])
def test_a_checkpoint_that_does_not_fit_the_run_is_refused_saying_why(change, phase, message):
    kwargs = {"num_samples": 3} if phase == "sampling" else {}
    arrays, attrs = checkpoint(**kwargs | change)
    with pytest.raises(ValueError, match=message):
        states.check_checkpoint(arrays, attrs, run(), phase)


def test_a_checkpoint_without_the_phases_trace_is_refused():
    arrays, attrs = checkpoint()  # a warmup checkpoint offered to sampling
    with pytest.raises(ValueError, match=r"^trace/sample_step is missing$"):
        states.check_checkpoint(arrays, attrs | {"num_samples": 0}, run(), "sampling")


# --------------------------------------------------------------------------- kernel statistics and warmup


def test_kernel_statistics_become_step_by_chain_arrays_and_come_back_as_lists():
    assert states.kernel_trace_arrays({"step": []}, chains=2) == {}
    assert states.kernel_trace_from_arrays({}) == {"step": []}
    trace = {"step": [1, 2, 3], "acceptance_rate": [np.asarray([0.5, 0.6]), np.asarray([0.7, 0.8]), np.asarray([0.9, 1.0])]}
    arrays = states.kernel_trace_arrays(trace, chains=2)["kernel_trace"]
    assert arrays["step"].dtype == np.int64 and arrays["acceptance_rate"].shape == (3, 2)
    back = states.kernel_trace_from_arrays({"kernel_trace": arrays})
    assert back["step"] == [1, 2, 3]
    np.testing.assert_array_equal(np.asarray(back["acceptance_rate"]), np.asarray(trace["acceptance_rate"]))


def test_a_warmup_state_written_as_arrays_reads_back_as_it_was(tmp_path):
    setup = run(chains=(3, 5))
    state = sampling.WarmupState(carried(), 4, trace={"step": [2, 4], "wall_seconds": [0.5, 1.0],
                                                       "test_accuracy": [np.asarray([0.1, 0.2], np.float32),
                                                                         np.asarray([0.3, 0.4], np.float32)]},
                                 seconds=1.25, kernel_trace={"step": [1, 2, 3, 4], "xi": [np.ones(2)] * 4})
    arrays = states.warmup_arrays(state, setup)
    assert arrays["chain"].tolist() == [3, 5]
    assert arrays["trace"]["grad_evals"].tolist() == [6, 12]
    assert arrays["trace"]["wall_seconds"].shape == (2, 2) and arrays["trace"]["test_accuracy"].shape == (2, 2)
    h5io.write_arrays(tmp_path / "w.h5", arrays, {"step": 4, "run_seconds": 1.25})
    back = states.warmup_state_from_arrays(*h5io.read_arrays(tmp_path / "w.h5"), setup)
    assert (back.step, back.seconds, back.trace["step"], back.trace["wall_seconds"]) == (4, 1.25, [2, 4], [0.5, 1.0])
    np.testing.assert_array_equal(np.asarray(back.trace["test_accuracy"]), np.asarray(state.trace["test_accuracy"]))
    assert back.kernel_trace["step"] == [1, 2, 3, 4]
    for a, b in zip(jax.tree.leaves(back.state), jax.tree.leaves(state.state)):
        np.testing.assert_array_equal(a, b)
