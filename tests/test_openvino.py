"""The OpenVINO backend on tiny models: parity with onnxruntime, the per-shape compile cache, thread
safety, precisions, and the one-line refusals (exit 6) when openvino, BF16 or a shape is missing."""

from __future__ import annotations

import importlib.util
import sys
import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from kitsrt.engines import create_backend
from kitsrt.errors import BackendUnavailable
from kitsrt.runtime.package import load_package

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="openvino is not installed (pip install 'kitsrt[openvino]')")


def tiny_conv_model(path) -> str:
    """A 3-D Conv (1 -> 3 channels, 3x3x3, same padding) + ReLU with dynamic N, D, H, W."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(3, 1, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["conv"], pads=[1] * 6),
         helper.make_node("Relu", ["conv"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, "D", "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3, "D", "H", "W"])],
        [weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_conv_model(tmp_path_factory.mktemp("ov") / "tiny.onnx")


def volume(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (1, 1, *shape)).astype(np.float32)


@needs_openvino
def test_matches_onnxruntime_and_compiles_shapes_that_come_back(tiny):
    backend = create_backend("openvino", tiny, threads=1)
    backend.static_after = 2
    with backend, create_backend("onnxruntime", tiny, threads=1) as ort:
        assert [(t.name, t.dtype) for t in backend.inputs()] == [("image", np.float32)]
        assert backend.inputs()[0].shape == (None, 1, None, None, None)
        for shape in ((8, 16, 24), (16, 8, 8), (8, 16, 24), (8, 16, 24)):
            x = volume(shape)
            out = backend.infer({"image": x})["logits"]
            assert out.shape == (1, 3, *shape) and out.dtype == np.float32
            np.testing.assert_allclose(out, ort.infer({"image": x})["logits"], rtol=1e-5, atol=1e-5)
        assert backend.compiles == 1  # 8x16x24 on its second call; 16x8x8 came once and stayed dynamic


@needs_openvino
def test_static_cache_is_bounded(tiny):
    backend = create_backend("openvino", tiny, threads=1)
    backend.static_after, backend.cached_shapes = 1, 2
    with backend:
        for size in (8, 16, 24, 8):
            backend.infer({"image": volume((size, 8, 8))})
        assert len(backend._cache) == 2 and backend.compiles == 4  # 8 was evicted by 24, compiled again


@needs_openvino
def test_infer_from_four_threads_at_once(tiny):
    inputs = [volume((16, 16, 8 * (1 + n % 2)), seed=n) for n in range(8)]
    with create_backend("openvino", tiny, threads=1) as backend:
        expected = [backend.infer({"image": x})["logits"] for x in inputs]
        results: dict[int, np.ndarray] = {}

        def work(n):
            results[n] = backend.infer({"image": inputs[n]})["logits"]

        _in_threads(work, 8)
    for n, want in enumerate(expected):
        np.testing.assert_array_equal(results[n], want)


@needs_openvino
@pytest.mark.parametrize("static_after", [1, 3])
def test_odd_shape_that_cannot_run_is_a_one_line_exit_6(tiny, static_after):
    backend = create_backend("openvino", tiny, threads=1)
    backend.static_after = static_after  # 1: static compile fails; 3: the dynamic model refuses it
    with backend:
        with pytest.raises(BackendUnavailable, match=r"cannot (compile|run) it .*input shape \[1, 2, 8, 8, 8\]") as err:
            backend.infer({"image": np.zeros((1, 2, 8, 8, 8), np.float32)})  # the model takes 1 channel
    assert err.value.exit_code == 6 and "\n" not in str(err.value)


def test_missing_openvino_says_what_to_install(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(BackendUnavailable, match=r"pip install 'kitsrt\[openvino\]'") as err:
        create_backend("openvino", tiny).load()
    assert err.value.exit_code == 6


def test_bf16_is_refused_on_backends_without_runtime_precisions(tiny):
    with pytest.raises(BackendUnavailable, match="only openvino offers"):
        create_backend("onnxruntime", tiny, runtime_precision="bf16")


@needs_openvino
def test_bf16_is_refused_on_a_cpu_without_it(tiny, monkeypatch):
    from kitsrt.engines import openvino_backend

    monkeypatch.setattr(openvino_backend, "cpu_supports_bf16", lambda core: False)
    with pytest.raises(BackendUnavailable, match="no native BF16") as err:
        create_backend("openvino", tiny, runtime_precision="bf16").load()
    assert err.value.exit_code == 6


@pytest.fixture(scope="module")
def phantom_voi(small_case):
    """The fine net's input for the first kidney VOI of the small phantom, cut by the runtime itself."""
    from kitsrt.runtime.kinds import kind_of

    from kitsrt.runtime.segmenter import Segmenter

    with Segmenter.load(threads=1) as segmenter:
        spec = segmenter.package.spec
        inputs = kind_of(spec).network_inputs(small_case[1], spec, segmenter.backends)
    return inputs["fine"][0][None, None]


@needs_openvino
@pytest.mark.parametrize("variant, runtime_precision, min_agreement", [
    ("", "fp32", 1.0), ("int8", "fp32", 0.99), ("", "bf16", 0.99)])
def test_demo_fine_net_precisions_follow_onnxruntime(phantom_voi, variant, runtime_precision, min_agreement):
    """The shipped demo fine net on a phantom's kidney VOI: OpenVINO FP32 is onnxruntime FP32 up to float rounding;
    the INT8 Q/DQ file and BF16 inference keep the argmax of onnxruntime on the same file."""
    from kitsrt.engines.openvino_backend import cpu_supports_bf16, require_openvino

    if runtime_precision == "bf16" and not cpu_supports_bf16(require_openvino().Core()):
        pytest.skip("this CPU has no native BF16")
    fine = load_package().model_path(load_package().spec.fine)
    path = str(fine if not variant else fine.with_name(f"{fine.stem}.{variant}.onnx"))
    x = phantom_voi
    with create_backend("onnxruntime", path, threads=1) as ort, \
            create_backend("openvino", path, threads=1, runtime_precision=runtime_precision) as ov:
        want, got = ort.infer({"image": x})["logits"], ov.infer({"image": x})["logits"]
    assert np.bincount(want.argmax(1).ravel(), minlength=3).min() > 100  # kidney and tumor are there to agree on
    agreement = float((want.argmax(1) == got.argmax(1)).mean())
    assert agreement >= min_agreement
    if min_agreement == 1.0:
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", ["onnxruntime", pytest.param("openvino", marks=needs_openvino)])
def test_release_memory_between_calls_keeps_results(tiny, name):
    x = volume((16, 24, 8))
    with create_backend(name, tiny, threads=1) as backend:
        before = backend.infer({"image": x})["logits"]
        backend.release_memory()
        np.testing.assert_array_equal(backend.infer({"image": x})["logits"], before)


def _segment_auto(small_case):
    from kitsrt.runtime.segmenter import Segmenter

    with Segmenter.load(backend="auto", threads=1) as segmenter:
        return segmenter.backend_name, segmenter.segment(small_case[1]).report["backend_choice"]


@needs_openvino
def test_auto_picks_openvino_after_its_parity_check_and_says_so(small_case):
    name, choice = _segment_auto(small_case)
    assert name.startswith("openvino")
    assert all(c["status"] == "skipped" and c["reason"] for c in choice[:-1])  # GPU backends, where absent
    assert choice[-1] == {"backend": "openvino", "status": "chosen", "reason": "parity with onnxruntime CPU"}


def test_auto_falls_back_to_onnxruntime_and_records_why(small_case, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "openvino", None)
    name, choice = _segment_auto(small_case)
    assert name.startswith("onnxruntime")
    skipped = {c["backend"]: c["reason"] for c in choice if c["status"] == "skipped"}
    assert "kitsrt[openvino]" in skipped["openvino"]
    assert "fell back to onnxruntime" in caplog.text


@needs_openvino
def test_auto_skips_a_backend_whose_outputs_disagree(small_case, monkeypatch):
    from kitsrt.engines import auto

    real = auto.parity_problem
    monkeypatch.setattr(auto, "parity_problem", lambda candidate, reference, precision: (
        "differs by 0.5" if candidate.name == "openvino" else real(candidate, reference, precision)))
    name, choice = _segment_auto(small_case)
    assert name.startswith("onnxruntime")
    assert any(c["backend"] == "openvino" and "parity check failed" in c["reason"] for c in choice)


def test_bf16_needs_openvino_and_a_gated_card(tmp_path):
    import shutil

    from kitsrt.errors import ModelPackageError
    from kitsrt.runtime.package import demo_package_path
    from kitsrt.runtime.segmenter import Segmenter

    package = tmp_path / "demo"
    shutil.copytree(demo_package_path(), package)
    for card in package.glob("*.bf16.json"):
        card.unlink()
    with pytest.raises(BackendUnavailable, match="only openvino offers"):
        Segmenter.load(package, precision="bf16")
    with pytest.raises(ModelPackageError, match=r"no bf16 gate result .*kitsrt quantize --precision bf16"):
        Segmenter.load(package, backend="openvino", precision="bf16")


@needs_openvino
def test_release_memory_while_other_threads_infer(tiny):
    inputs = [volume((32, 32, 16), seed=n) for n in range(6)]
    with create_backend("openvino", tiny, threads=1) as backend:
        expected = [backend.infer({"image": x})["logits"] for x in inputs]
        results: dict[int, np.ndarray] = {}

        def work(n):
            results[n] = backend.infer({"image": inputs[n]})["logits"]
            backend.release_memory()

        _in_threads(work, 6)
    for n, want in enumerate(expected):
        np.testing.assert_array_equal(results[n], want)


def _in_threads(work, count: int) -> None:
    """Run ``work(n)`` for n in range(count), each in its own thread, all at once."""
    threads = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.parametrize("name", ["onnxruntime", pytest.param("openvino", marks=needs_openvino)])
def test_close_waits_for_a_call_in_flight_and_then_refuses_new_ones(tiny, name):
    """A ``close`` that comes while another thread is inside ``infer`` must not pull the model from under
    it (that surfaced as a misleading "cannot run it" BackendUnavailable): the call finishes, then the
    backend closes, and a later call says it is closed."""
    from kitsrt.errors import KitsrtError

    backend = create_backend(name, tiny, threads=1).load()
    x = volume((16, 16, 8))
    expected = backend.infer({"image": x})["logits"]
    entered, go = threading.Event(), threading.Event()
    real = backend._infer

    def slow(feed):
        entered.set()
        go.wait(10)
        return real(feed)

    backend._infer = slow
    outcome = {}

    def call():
        try:
            outcome["logits"] = backend.infer({"image": x})["logits"]
        except Exception as exc:  # recorded, asserted below
            outcome["error"] = exc

    caller, closer = threading.Thread(target=call), threading.Thread(target=backend.close)
    caller.start()
    assert entered.wait(10)
    closer.start()
    closer.join(0.3)
    still_open = closer.is_alive()  # close is waiting for the call in flight
    go.set()
    caller.join(10)
    closer.join(10)
    assert "error" not in outcome, outcome.get("error")
    np.testing.assert_array_equal(outcome["logits"], expected)
    assert still_open and not closer.is_alive()
    with pytest.raises(KitsrtError, match="closed"):
        backend.infer({"image": x})


@needs_openvino
def test_a_static_compile_does_not_block_other_shapes(tiny, monkeypatch):
    """While one shape compiles statically, calls of another shape run (the compile is outside the cache
    lock), and a second caller of the compiling shape waits for that one compile instead of starting its own."""
    from kitsrt.engines import openvino_backend

    backend = create_backend("openvino", tiny, threads=1)
    backend.static_after = 1
    started, go = threading.Event(), threading.Event()
    real = openvino_backend.compile_for_shape

    def slow_compile(core, model, shape, config):
        if shape[2] == 16:
            started.set()
            go.wait(20)
        return real(core, model, shape, config)

    monkeypatch.setattr(openvino_backend, "compile_for_shape", slow_compile)
    with backend:
        backend.static_after = 3  # the other shape stays on the dynamic model
        results = {}
        first = threading.Thread(target=lambda: results.setdefault("a", backend.infer({"image": volume((16, 8, 8))})))
        backend._seen[(1, 1, 16, 8, 8)] = 2  # its next call compiles
        first.start()
        assert started.wait(10)
        second = threading.Thread(target=lambda: results.setdefault("b", backend.infer({"image": volume((16, 8, 8))})))
        second.start()
        other = threading.Thread(target=lambda: results.setdefault("other", backend.infer({"image": volume((8, 8, 8))})))
        other.start()
        other.join(8)  # 8x8x8 runs while 16x8x8 compiles (the compile waits for ``go`` up to 20 s)
        finished_during_compile = not other.is_alive()
        go.set()
        other.join(20)
        assert finished_during_compile and results["other"]["logits"].shape == (1, 3, 8, 8, 8)
        first.join(10)
        second.join(10)
        assert backend.compiles == 1 and set(results) == {"a", "b", "other"}
        np.testing.assert_array_equal(results["a"]["logits"], results["b"]["logits"])
