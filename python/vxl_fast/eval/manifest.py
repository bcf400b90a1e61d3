"""The ``lmms_eval.models`` entry point: lmms-eval's model id ``vxl_fast`` names :mod:`.lmms_plugin`."""

from lmms_eval.models.registry_v2 import ModelManifest

MANIFEST = ModelManifest(model_id="vxl_fast", simple_class_path="vxl_fast.eval.lmms_plugin.VideoXLLmms")
