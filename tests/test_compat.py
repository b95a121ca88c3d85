import itertools

import torch

from chunky.compat import ensure_torchvision, nms_reference


def iou(a, b):
    w = (min(a[2], b[2]) - max(a[0], b[0])).clamp(min=0)
    h = (min(a[3], b[3]) - max(a[1], b[1])).clamp(min=0)
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_nms_reference_known_case():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert nms_reference(boxes, scores, 0.5).tolist() == [3, 2]
    assert nms_reference(boxes, scores, 0.99).tolist() == [3, 0, 1, 2]


def test_nms_reference_properties_on_random_boxes():
    rng = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=rng) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(60, 2, generator=rng) * 20], dim=1)
    scores = torch.rand(60, generator=rng)
    keep = nms_reference(boxes, scores, 0.4).tolist()
    assert scores[keep].tolist() == sorted(scores[keep].tolist(), reverse=True)
    for i, j in itertools.combinations(keep, 2):
        assert iou(boxes[i], boxes[j]) <= 0.4
    for d in set(range(60)) - set(keep):  # every dropped box is covered by a better kept one
        assert any(scores[k] >= scores[d] and iou(boxes[k], boxes[d]) > 0.4 for k in keep)


def test_torchvision_users_work_and_second_call_is_a_no_op():
    ensure_torchvision()
    assert ensure_torchvision() is False  # torchvision now imports as is: nothing to repair
    import lpips
    from torchvision.ops import nms

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11.0]])
    assert nms(boxes, torch.tensor([0.5, 0.9]), 0.5).tolist() == [1]
    metric = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert metric(x, x).item() == 0.0
    assert metric(x, -x).item() > 0.0
