//! `MetricLoss` for a loss on one of the drivers: both precisions through the driver, the
//! reduction from the loss's parts.

/// Implements [`MetricLoss`](metric_loss_core::MetricLoss) for a [`MinedLoss`](crate::MinedLoss):
/// both precisions run [`compute_mined`](crate::compute_mined), and the reduction is the
/// reducer's as a Keras reduction (`Auto` for one that is not).
#[macro_export]
macro_rules! mined_metric_loss {
    ($ty:ty) => {
        $crate::__driver_metric_loss!($ty, $crate::MinedLoss, $crate::compute_mined);
    };
}

/// Implements [`MetricLoss`](metric_loss_core::MetricLoss) for a [`RowLoss`](crate::RowLoss):
/// both precisions run [`compute_rows`](crate::compute_rows), and the reduction is the
/// reducer's as a Keras reduction (`Auto` for one that is not).
#[macro_export]
macro_rules! row_metric_loss {
    ($ty:ty) => {
        $crate::__driver_metric_loss!($ty, $crate::RowLoss, $crate::compute_rows);
    };
}

/// What [`mined_metric_loss!`] and [`row_metric_loss!`] expand to; not part of the API.
#[doc(hidden)]
#[macro_export]
macro_rules! __driver_metric_loss {
    ($ty:ty, $driver:path, $compute:path) => {
        impl $crate::__private::MetricLoss for $ty {
            fn name(&self) -> &str {
                <$ty as $driver>::name(self)
            }

            fn compute_f32(
                &self,
                input: &$crate::__private::LossInput<'_, f32>,
                workspace: &mut $crate::__private::Workspace,
                out: &mut $crate::__private::LossOutput<f32>,
            ) -> Result<(), $crate::__private::LossError> {
                $compute(self, input, workspace, out)
            }

            fn compute_f64(
                &self,
                input: &$crate::__private::LossInput<'_, f64>,
                workspace: &mut $crate::__private::Workspace,
                out: &mut $crate::__private::LossOutput<f64>,
            ) -> Result<(), $crate::__private::LossError> {
                $compute(self, input, workspace, out)
            }

            fn reduction(&self) -> $crate::__private::Reduction {
                self.keras_reduction()
                    .unwrap_or($crate::__private::Reduction::Auto)
            }

            fn keras_reduction(&self) -> Option<$crate::__private::Reduction> {
                <$ty as $driver>::parts(self).keras_reduction()
            }
        }
    };
}
