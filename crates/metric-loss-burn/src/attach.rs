//! The autodiff node that carries a loss computed on the host: its forward output is the
//! loss value, its backward pass hands the kept gradients, scaled by the upstream gradient,
//! to the queries (and keys).
//!
//! On the backends listed in the backend extension (Flex, NdArray: the CPU backends this
//! crate is built and tested with) it is a custom autodiff op (`Backward`). Any other
//! backend takes [`attach_composed`], the same value and gradient from differentiable
//! tensor ops.

use burn::tensor::{DType, FloatDType, Tensor};

/// The loss tensor (`[1]`) with the gradients attached: `grad_queries` (and `grad_keys`)
/// times the upstream gradient flow to `queries` (and `keys`) in the backward pass.
pub(crate) struct Attach {
    /// The queries, a leaf or computed from one.
    pub(crate) queries: Tensor<2>,
    /// A separate key set, if any.
    pub(crate) keys: Option<Tensor<2>>,
    /// The loss value, shape `[1]`, a constant in the queries' dtype on their device.
    pub(crate) value: Tensor<1>,
    /// ∂L/∂queries, a constant like `queries`.
    pub(crate) grad_queries: Tensor<2>,
    /// ∂L/∂keys, a constant like `keys`.
    pub(crate) grad_keys: Option<Tensor<2>>,
}

impl Attach {
    /// The loss tensor, through the custom op where the backend has it (unless
    /// `composed`, which the tests use to run the other path on the CPU).
    pub(crate) fn apply(self, composed: bool) -> Tensor<1> {
        #[cfg(any(feature = "flex", feature = "ndarray"))]
        if !composed && extension::covers(&self.queries.device()) {
            return extension::attach(self);
        }
        attach_composed(self)
    }
}

/// The same node from differentiable ops, for backends outside the extension:
/// `value + (s − detach(s))` with `s = Σ queries ⊙ grad_queries (+ Σ keys ⊙ grad_keys)`.
/// `s − detach(s)` is exactly zero (both are the one value `s`), so the forward result is
/// the loss value bit for bit, and its gradient is `grad_queries` (and `grad_keys`). `s`
/// is summed in at least `f32`, where the inputs, finite and checked, cannot overflow.
pub(crate) fn attach_composed(attach: Attach) -> Tensor<1> {
    fn dot(x: Tensor<2>, grad: Tensor<2>) -> Tensor<1> {
        let wide = |t: Tensor<2>| match t.dtype() {
            DType::F16 | DType::BF16 => t.cast(FloatDType::F32),
            _ => t,
        };
        (wide(x) * wide(grad)).sum()
    }
    let dtype = attach.value.dtype();
    let mut s = dot(attach.queries, attach.grad_queries);
    if let (Some(keys), Some(grad)) = (attach.keys, attach.grad_keys) {
        s = s + dot(keys, grad);
    }
    let zero = s.clone() - s.detach();
    let zero = match dtype {
        DType::F16 => zero.cast(FloatDType::F16),
        DType::BF16 => zero.cast(FloatDType::BF16),
        _ => zero,
    };
    attach.value + zero
}

#[cfg(any(feature = "flex", feature = "ndarray"))]
mod extension {
    //! The custom autodiff op, as a burn backend extension.
    #![allow(missing_docs, unreachable_pub)]

    use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, DispatchDevice};
    use burn::tensor::{Device, Shape, Tensor};

    use super::Attach;

    /// Whether `device` runs on a backend the extension lists, with autodiff.
    pub(super) fn covers(device: &Device) -> bool {
        match device.as_dispatch() {
            DispatchDevice::Autodiff(inner) => match &**inner {
                #[cfg(feature = "flex")]
                DispatchDevice::Flex(_) => true,
                #[cfg(feature = "ndarray")]
                DispatchDevice::NdArray(_) => true,
                _ => false,
            },
            _ => false,
        }
    }

    /// The custom node on the extension's backends. The plain backends never record a
    /// graph, so their body is the value itself; `Autodiff<B>` records the backward pass.
    #[backend_extension(
        Flex: cfg(feature = "flex"),
        NdArray: cfg(feature = "ndarray"),
        Autodiff
    )]
    pub trait MetricLossBackend: Backend {
        /// `value`, with `grad_queries` times the upstream gradient flowing to `queries`.
        fn metric_loss_attach(
            queries: FloatTensor<Self>,
            value: FloatTensor<Self>,
            grad_queries: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            let _ = (queries, grad_queries);
            value
        }

        /// As `metric_loss_attach`, and `grad_keys` flowing to `keys`.
        fn metric_loss_attach_keys(
            queries: FloatTensor<Self>,
            keys: FloatTensor<Self>,
            value: FloatTensor<Self>,
            grad_queries: FloatTensor<Self>,
            grad_keys: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            let _ = (queries, keys, grad_queries, grad_keys);
            value
        }
    }

    #[cfg(feature = "flex")]
    impl MetricLossBackend for burn::backend::Flex {}
    #[cfg(feature = "ndarray")]
    impl MetricLossBackend for burn::backend::NdArray {}

    /// The kept gradient times the upstream one (a `[1]` tensor, broadcast over the rows).
    fn scaled<B: Backend>(grad: FloatTensor<B>, upstream: FloatTensor<B>) -> FloatTensor<B> {
        B::float_mul(grad, B::float_reshape(upstream, Shape::new([1, 1])))
    }

    /// The backward pass: each parent that wants a gradient gets its kept one, scaled.
    #[derive(Debug)]
    struct AttachBackward;

    impl<B: Backend> Backward<B, 1> for AttachBackward {
        type State = FloatTensor<B>;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let upstream = grads.consume::<B>(&ops.node);
            let [queries] = ops.parents;
            if let Some(node) = queries {
                grads.register::<B>(node.id, scaled::<B>(ops.state, upstream));
            }
        }
    }

    impl<B: Backend> Backward<B, 2> for AttachBackward {
        type State = (FloatTensor<B>, FloatTensor<B>);

        fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            let upstream = grads.consume::<B>(&ops.node);
            let [queries, keys] = ops.parents;
            let (grad_queries, grad_keys) = ops.state;
            if let Some(node) = keys {
                grads.register::<B>(node.id, scaled::<B>(grad_keys, upstream.clone()));
            }
            if let Some(node) = queries {
                grads.register::<B>(node.id, scaled::<B>(grad_queries, upstream));
            }
        }
    }

    impl<B: MetricLossBackend, C: CheckpointStrategy> MetricLossBackend for Autodiff<B, C> {
        fn metric_loss_attach(
            queries: FloatTensor<Self>,
            value: FloatTensor<Self>,
            grad_queries: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            let value = value.into_primitive();
            match <AttachBackward as Backward<B, 1>>::prepare::<C>(AttachBackward, [queries.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(grad_queries.into_primitive(), value),
                OpsKind::UnTracked(prep) => prep.finish(value),
            }
        }

        fn metric_loss_attach_keys(
            queries: FloatTensor<Self>,
            keys: FloatTensor<Self>,
            value: FloatTensor<Self>,
            grad_queries: FloatTensor<Self>,
            grad_keys: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            let value = value.into_primitive();
            match <AttachBackward as Backward<B, 2>>::prepare::<C>(
                AttachBackward,
                [queries.node(), keys.node()],
            )
            .compute_bound()
            .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish(
                    (grad_queries.into_primitive(), grad_keys.into_primitive()),
                    value,
                ),
                OpsKind::UnTracked(prep) => prep.finish(value),
            }
        }
    }

    /// The node through the extension (the caller checked [`covers`]).
    pub(super) fn attach(attach: Attach) -> Tensor<1> {
        let out = match (attach.keys, attach.grad_keys) {
            (Some(keys), Some(grad_keys)) => Dispatch::metric_loss_attach_keys(
                attach.queries.into_dispatch(),
                keys.into_dispatch(),
                attach.value.into_dispatch(),
                attach.grad_queries.into_dispatch(),
                grad_keys.into_dispatch(),
            ),
            _ => Dispatch::metric_loss_attach(
                attach.queries.into_dispatch(),
                attach.value.into_dispatch(),
                attach.grad_queries.into_dispatch(),
            ),
        };
        Tensor::from_dispatch(out)
    }
}
