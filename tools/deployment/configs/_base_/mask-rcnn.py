# Mask R-CNN as one ONNX graph, from the image batch to the detections:
#   dets   (batch, num_dets, 5)  boxes x1, y1, x2, y2 in input pixels, score
#   labels (batch, num_dets)     class indices
#   masks  (batch, num_dets, 28, 28) mask logits per box; mmdeploy pastes
#          them into the image (export_postprocess_mask=False) outside it.
# The model config's test_cfg (rpn/rcnn nms_pre, max_per_img, score_thr, nms)
# decides the thresholds; post_processing fills what it leaves unset.
_base_ = ['./onnx.py']

# Axis 0 of every tensor is the batch; the image's height and width and the
# number of detections vary too.
image_axes = {0: 'batch', 2: 'height', 3: 'width'}
det_axes = {0: 'batch', 1: 'num_dets'}
mask_axes = {0: 'batch', 1: 'num_dets', 2: 'height', 3: 'width'}
onnx_config = dict(
    output_names=['dets', 'labels', 'masks'],
    dynamic_axes=dict(
        input=image_axes, dets=det_axes, labels=det_axes, masks=mask_axes))
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    post_processing=dict(
        score_threshold=0.05,
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1,
        export_postprocess_mask=False))
