"""nnU-Net's own CPU prediction of one scan in one process, timed per stage: the same calls
``nnUNetv2_predict -device cpu`` makes, without its worker processes, so that the side-by-side
benchmark can say where nnU-Net's time goes (run as a child process by nnunet_side_by_side.py).

    python benchmarks/nnunet_stages.py MODEL_FOLDER SCAN OUTPUT_TRUNCATED --folds 0 1 [--disable-tta]
        --launched EPOCH_S

Stages, each timed with ``time.perf_counter``:
  start-up    from ``--launched`` (the parent's clock just before it started this process) to a
              ready predictor: interpreter, importing torch and nnU-Net, ``initialize_from_trained_model_folder``
              (the checkpoints of every fold);
  read        the plans' reader (``image_reader_writer_class().read_images``);
  preprocess  ``DefaultPreprocessor.run_case_npy`` (transpose, crop to non-zero, normalise, resample to
              the target spacing) and the float32 tensor the preprocessing worker hands over;
  network     ``predict_logits_from_preprocessed_data`` (every fold's sliding window, mirroring when on);
  export      ``convert_predicted_logits_to_segmentation_with_correct_shape`` (logits resampled back to the
              cropped shape, sigmoid/argmax, uncrop, transpose back), what nnU-Net's export worker runs;
  write       the plans' writer (``write_seg``).
Settings as the CLI's: torch threads = the CPU count in the main process (nnU-Net lowers them to
``min(default_num_processes, threads)`` for the network), the export at ``default_num_processes``
torch threads as in its export worker, step 0.5, Gaussian weights. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", help="nnU-Net v2 trained-model folder")
    parser.add_argument("scan", help="the scan (nnU-Net's _0000 file)")
    parser.add_argument("output_truncated", help="output path without the file ending")
    parser.add_argument("--folds", nargs="+", type=int, required=True)
    parser.add_argument("--disable-tta", action="store_true")
    parser.add_argument("--launched", type=float, required=True, help="time.time() when the parent launched us")
    args = parser.parse_args()

    import multiprocessing

    import torch
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch.set_num_threads(multiprocessing.cpu_count())  # as nnUNetv2_predict does for -device cpu
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=not args.disable_tta,
                                perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(args.model, tuple(args.folds), checkpoint_name="checkpoint_final.pth")
    stages = {"start-up": time.time() - args.launched}
    plans, configuration = predictor.plans_manager, predictor.configuration_manager

    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[stage] = now - clock
        clock = now

    reader = plans.image_reader_writer_class()
    data, properties = reader.read_images([args.scan])
    lap("read")
    preprocessor = configuration.preprocessor_class(verbose=False)
    data, _, properties = preprocessor.run_case_npy(data, None, properties, plans, configuration, predictor.dataset_json)
    data = torch.from_numpy(data).to(dtype=torch.float32, memory_format=torch.contiguous_format)
    lap("preprocess")
    logits = predictor.predict_logits_from_preprocessed_data(data).cpu().detach().numpy()
    del data
    lap("network")
    segmentation = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, plans, configuration, predictor.label_manager, properties, return_probabilities=False)
    del logits
    lap("export")
    reader.write_seg(segmentation, args.output_truncated + predictor.dataset_json["file_ending"], properties)
    lap("write")
    print(json.dumps({k: round(v, 2) for k, v in stages.items()}), flush=True)


if __name__ == "__main__":
    main()
