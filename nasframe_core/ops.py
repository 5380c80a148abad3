"""The standard candidate operations of cell-based NAS spaces.

Search spaces build their candidates from these classes, and optimizers recognise them:
The one-shot engine's fast path shares the parameter-free ones between the edges leaving one node and
batches the :class:`ReLUConvBN` convolutions of those edges into one call. A space may use
ops of its own as well; they then run one by one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn



def batch_norm(C: int, affine: bool, track_running_stats: bool = True) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(C, affine=affine, track_running_stats=track_running_stats)


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation) -> torch.Tensor:
    """``F.conv2d(x, weight, None, stride, padding, dilation, groups=channels)``, a depthwise
    convolution, with dilated ones rewritten as undilated ones on CPUs.

    CPU kernels are slow on dilated depthwise convolutions (the backward pass above all:
    5-10x the undilated one). With dilation d and "same" padding d*(k-1)/2, output pixel
    (h, w) reads only the input pixels congruent to (h, w) mod d, so the convolution is the
    undilated one with padding (k-1)/2 on each of the d*d phase sub-images (:func:`phase_split`);
    at stride d only the phase (0, 0) is read. The same math, values and gradients; other
    cases run as given.
    """
    plan = dilated_plan(x, weight, stride, padding, dilation)
    if plan is None:
        return depthwise(x, weight, stride, padding, dilation)
    mode, d, same = plan
    return dilated_output(same_depthwise(dilated_input(x, mode, d), weight, same), mode, d, x.shape[0])


def dilated_plan(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation):
    """How :func:`depthwise_conv2d` rewrites a dilated depthwise convolution of ``x``:
    ``("phases", d, same)``, ``("subsample", d, same)`` or None (run as given)."""
    d, s, p = _pair(dilation), _pair(stride), _pair(padding)
    kh, kw = weight.shape[-2:]
    if (x.device.type != "cpu" or d[0] != d[1] or d[0] == 1 or s[0] != s[1] or s[0] not in (1, d[0])
            or kh % 2 == 0 or kw % 2 == 0 or p != (d[0] * (kh - 1) // 2, d[0] * (kw - 1) // 2)):
        return None
    d = d[0]
    same = ((kh - 1) // 2, (kw - 1) // 2)
    if s[0] == d:
        return "subsample", d, same
    if x.shape[-2] % d or x.shape[-1] % d:
        return None
    return "phases", d, same


def dilated_input(x: torch.Tensor, mode: str, d: int) -> torch.Tensor:
    """What a :func:`dilated_plan` rewrite convolves: the phases of ``x`` ("phases") or its
    phase (0, 0) ("subsample")."""
    return x[:, :, ::d, ::d] if mode == "subsample" else phase_split(x, d)


def dilated_output(y: torch.Tensor, mode: str, d: int, N: int) -> torch.Tensor:
    """The inverse of :func:`dilated_input` for the rewrite's output (batch ``N``)."""
    return y if mode == "subsample" else phase_merge(y, d, N)


def phase_split(x: torch.Tensor, d: int) -> torch.Tensor:
    """(N, C, H, W) -> (d*d*N, C, H/d, W/d): the d*d phase sub-images ``x[:, :, a::d, b::d]``,
    phase-major along the batch, in one copy that keeps channels-last storage."""
    N, C, H, W = x.shape
    h, w = H // d, W // d
    if x.is_contiguous(memory_format=torch.channels_last):
        phases = x.permute(0, 2, 3, 1).reshape(N, h, d, w, d, C).permute(2, 4, 0, 1, 3, 5)
        return phases.reshape(d * d * N, h, w, C).permute(0, 3, 1, 2)
    return x.reshape(N, C, h, d, w, d).permute(3, 5, 0, 1, 2, 4).reshape(d * d * N, C, h, w)


def phase_merge(y: torch.Tensor, d: int, N: int) -> torch.Tensor:
    """The inverse of :func:`phase_split`: interleave the phases back into (N, C, H, W)."""
    C, h, w = y.shape[1:]
    if y.is_contiguous(memory_format=torch.channels_last):
        y = y.permute(0, 2, 3, 1).reshape(d, d, N, h, w, C).permute(2, 3, 0, 4, 1, 5)
        return y.reshape(N, h * d, w * d, C).permute(0, 3, 1, 2)
    return y.reshape(d, d, N, C, h, w).permute(2, 3, 4, 0, 5, 1).reshape(N, C, h * d, w * d)


def same_depthwise(x: torch.Tensor, weight: torch.Tensor, same: tuple) -> torch.Tensor:
    """The undilated stride-1 depthwise convolution with padding ``same``. On images smaller
    than the kernel the padding is explicit: there oneDNN's backward pass would fall back to a
    slow generic kernel (3x on a 5x5 kernel over 4x4 images)."""
    if x.shape[-2] < weight.shape[-2] or x.shape[-1] < weight.shape[-1]:
        x = F.pad(x, (same[1], same[1], same[0], same[0]))
        same = (0, 0)
    return depthwise(x, weight, 1, same, 1)


class ConvWithOwnWeightGrad(torch.autograd.Function):
    """A stride-1, undilated, bias-free convolution whose input gradient is ATen's and whose
    weight gradient is ``weight_grad(x, grad_out, weight, padding, groups)``:
    ``ConvWithOwnWeightGrad.apply(x, weight, padding, groups, weight_grad)``. Under
    ``create_graph`` the weight gradient is ATen's too (it is differentiable)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, padding: int, groups: int, weight_grad) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.groups, ctx.weight_grad = padding, groups, weight_grad
        return F.conv2d(x, weight, None, 1, padding, 1, groups)

    @staticmethod
    def backward(ctx, go: torch.Tensor):
        x, weight = ctx.saved_tensors
        p, groups = ctx.padding, ctx.groups
        own = ctx.needs_input_grad[1] and not torch.is_grad_enabled()  # create_graph: all of it ATen's
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1] and not own, False]
        gx = gw = None
        if any(mask):
            gx, gw, _ = torch.ops.aten.convolution_backward(
                go, x, weight, None, [1, 1], [p, p], [1, 1], False, [0, 0], groups, mask)
        if own:
            gw = ctx.weight_grad(x, go, weight, p, groups)
        return gx, gw, None, None, None


def own_weight_grad_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :class:`ConvWithOwnWeightGrad` may stand in for the convolution of ``x`` and
    ``weight``: a weight gradient is wanted, and no autocast would hand its backward other dtypes."""
    return weight.requires_grad and torch.is_grad_enabled() and not _autocast_on(x.device.type)


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


#: the native convolutions installed by :func:`use_native_convolutions` (None: ATen's everywhere)
_native = None


def use_native_convolutions(provider) -> None:
    """Route the convolutions :func:`depthwise` and :func:`conv3x3` may hand over to ``provider``
    (``None``: ATen's again). Process-wide, so it is called where the process is owned (the
    ``nasframe`` command, when ``run.cpu_kernels`` is on and a plugin provides kernels), never as a
    side effect of a library call. ``provider`` has:

    - ``accepts_depthwise(x, kernel_size, padding)`` and
      ``depthwise_weight_grad(x, grad_out, weight, padding, groups)``: the weight gradient of a
      stride-1 undilated depthwise convolution it accepts;
    - ``accepts_conv3x3(x, weight)`` and ``conv3x3(x, weight)``: a differentiable
      ``F.conv2d(x, weight, None, 1, 1)`` for the dense 3x3 convolutions it accepts.

    Their rounding differs from ATen's, so a seeded search takes another path with them."""
    global _native
    _native = provider


def native_convolutions():
    """The provider :func:`use_native_convolutions` installed, or ``None``."""
    return _native


def depthwise(x: torch.Tensor, weight: torch.Tensor, stride=1, padding=0, dilation=1) -> torch.Tensor:
    """``F.conv2d(x, weight, None, stride, padding, dilation, groups=channels)``. When native
    convolutions are installed (:func:`use_native_convolutions`), the weight gradient is wanted
    (first derivatives, no autocast) and the provider accepts the convolution (stride 1,
    undilated, square kernel), that gradient runs in the provider's kernel."""
    p = _pair(padding)
    if (_native is not None and _pair(stride) == (1, 1) and _pair(dilation) == (1, 1) and isinstance(p[0], int)
            and p[0] == p[1] and weight.shape[-1] == weight.shape[-2] and weight.shape[1] == 1
            and weight.shape[0] == x.shape[1] and weight.dtype == x.dtype and own_weight_grad_applies(x, weight)
            and _native.accepts_depthwise(x, weight.shape[-1], p[0])):
        return ConvWithOwnWeightGrad.apply(x, weight, p[0], x.shape[1], _native.depthwise_weight_grad)
    return F.conv2d(x, weight, None, stride, padding, dilation, weight.shape[0])


def conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight, None, 1, 1)`` for a (Co, Ci, 3, 3) ``weight``; in the installed native
    convolutions (:func:`use_native_convolutions`) where they accept it and no autocast is on."""
    if _native is not None and not _autocast_on(x.device.type) and _native.accepts_conv3x3(x, weight):
        return _native.conv3x3(x, weight)
    return F.conv2d(x, weight, None, 1, 1)


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class Zero(nn.Module):
    """The 'none' op: zeros with the shape the edge's output would have."""

    def __init__(self, stride: int = 1, C_out: int | None = None):
        super().__init__()
        self.stride = stride
        self.C_out = C_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.C_out is not None and self.C_out != x.shape[1]:
            return x.new_zeros((x.shape[0], self.C_out) + tuple(x.shape[2:]))
        return x.mul(0.0)


class ReLUFirst(nn.Module):
    """An op that starts with a ReLU of its input: ``forward(x) == after_relu(relu(x))``.

    Optimizers that run several such ops on one input compute the ReLU once.
    """

    relu_first = True

    def after_relu(self, r: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_relu(F.relu(x))


class ReLUConvBN(ReLUFirst):
    """ReLU, then a bias-free convolution, then batch norm."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.conv = nn.Conv2d(C_in, C_out, kernel_size, stride, padding, dilation, bias=False)
        self.bn = batch_norm(C_out, affine, track_running_stats)

    @property
    def same_padding(self) -> bool:
        """Whether the padding keeps the kernel centred (so kernels of any size can be stacked)."""
        return 2 * self.padding == self.dilation * (self.kernel_size - 1)

    def after_relu(self, r: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(r))

    def conv_with(self, r: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """This op's convolution of ``r`` with ``weight`` (its own, or several such ops'
        concatenated along the output channels); a 3x3 one with stride 1 and padding 1 runs in
        :func:`conv3x3` (Winograd's algorithm on CPUs)."""
        if (self.kernel_size, self.stride, self.padding, self.dilation) == (3, 1, 1, 1):
            return conv3x3(r, weight)
        return F.conv2d(r, weight, None, self.stride, self.padding, self.dilation)


class Pool(nn.Module):
    """3x3 average (padding not counted) or max pooling, optionally followed by batch norm."""

    def __init__(
        self,
        mode: str,
        C: int,
        stride: int = 1,
        bn: bool = False,
        affine: bool = False,
        track_running_stats: bool = True,
    ):
        super().__init__()
        if mode not in ("avg", "max"):
            raise ValueError(f"pool mode must be 'avg' or 'max', not {mode!r}")
        self.mode, self.stride = mode, stride
        self.bn = batch_norm(C, affine, track_running_stats) if bn else None

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "avg":
            return F.avg_pool2d(x, 3, self.stride, 1, count_include_pad=False)
        return F.max_pool2d(x, 3, self.stride, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(x)
        return out if self.bn is None else self.bn(out)


class FactorizedReduce(ReLUFirst):
    """Halve the resolution with two offset stride-2 1x1 convolutions, concatenated."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError("FactorizedReduce needs an even number of output channels")
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = batch_norm(C_out, affine, track_running_stats)

    def after_relu(self, r: torch.Tensor) -> torch.Tensor:
        # A stride-2 1x1 convolution reads every other pixel: pick those pixels first and
        # convolve at stride 1 (the same numbers). oneDNN's backward of the strided 1x1
        # convolution corrupts memory on channels-last inputs when its output gradient is a
        # slice of the concatenation, so the strided form is not used here.
        even = F.conv2d(r[:, :, ::2, ::2], self.conv_1.weight)
        odd = F.conv2d(r[:, :, 1::2, 1::2], self.conv_2.weight)
        return self.bn(torch.cat([even, odd], dim=1))


class DilConv(ReLUFirst):
    """ReLU, depthwise (dilated) convolution, pointwise convolution, batch norm."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, dilation, affine=True, track_running_stats=True):
        super().__init__()
        self.depthwise = nn.Conv2d(C_in, C_in, kernel_size, stride, padding, dilation, groups=C_in, bias=False)
        self.pointwise = nn.Conv2d(C_in, C_out, 1, bias=False)
        self.bn = batch_norm(C_out, affine, track_running_stats)

    def after_relu(self, r: torch.Tensor) -> torch.Tensor:
        dw = self.depthwise
        return self.bn(self.pointwise(depthwise_conv2d(r, dw.weight, dw.stride, dw.padding, dw.dilation)))


class SepConv(ReLUFirst):
    """Two stacked :class:`DilConv` blocks without dilation (the first one carries the stride)."""

    def __init__(self, C_in, C_out, kernel_size, stride, padding, affine=True, track_running_stats=True):
        super().__init__()
        self.first = DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine, track_running_stats)
        self.second = DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine, track_running_stats)

    def after_relu(self, r: torch.Tensor) -> torch.Tensor:
        return self.second(self.first.after_relu(r))
