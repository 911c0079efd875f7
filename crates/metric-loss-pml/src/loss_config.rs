//! [`pair_loss!`]: a pair-based loss's config struct (PML's keyword arguments plus a
//! `distance`, a `reducer` and a `name`), its setters, defaults, `build`, serde and the
//! built loss, written once.

/// Declares `$loss` (holding its [`PairFormula`](crate::pairs::PairFormula) `$formula`, its
/// parts and its validated config) and `$config`, whose extra fields are `$field: $ty =
/// $default`, turned into the formula by `$build` (which validates them).
macro_rules! pair_loss {
    (
        $(#[$loss_doc:meta])*
        loss: $loss:ident,
        $(#[$config_doc:meta])*
        config: $config:ident,
        class: $class:literal,
        distance: $distance:expr,
        reducer: $reducer:expr,
        fields: { $($(#[$field_doc:meta])* $field:ident: $ty:ty = $default:expr),* $(,)? },
        build: |$c:ident| -> $formula:ty $build:block
    ) => {
        $(#[$config_doc])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $config {
            $($(#[$field_doc])* pub $field: $ty,)*
            /// The distance: PML's (`{"class_name": "LpDistance", "config": {...}}`), a
            /// TF Similarity name such as `"cosine"`, or any registered distance.
            pub distance: metric_loss_core::PartConfig<dyn metric_loss_core::RegisteredDistance>,
            /// The reducer of each sub-loss: PML's (`{"class_name": "MeanReducer",
            /// "config": {}}`), a Keras reduction name, or any registered reducer.
            pub reducer: metric_loss_core::PartConfig<dyn metric_loss_core::RegisteredReducer>,
            /// The loss's name.
            pub name: String,
        }

        impl Default for $config {
            fn default() -> Self {
                Self {
                    $($field: $default,)*
                    distance: $distance.into(),
                    reducer: $reducer.into(),
                    name: $class.into(),
                }
            }
        }

        impl $config {
            metric_loss_core::config_setters! {
                $(#[doc = concat!("Sets `", stringify!($field), "`.")] $field: $ty,)*
                /// Sets the distance (a PML distance, a name, or a registered part).
                distance: impl Into<metric_loss_core::PartConfig<dyn metric_loss_core::RegisteredDistance>>,
                /// Sets the reducer (a PML reducer, a Keras reduction name, or a registered part).
                reducer: impl Into<metric_loss_core::PartConfig<dyn metric_loss_core::RegisteredReducer>>,
                /// Sets the name.
                name: impl Into<String>,
            }

            /// Validates the config and builds the loss.
            ///
            /// # Errors
            /// [`LossError::InvalidParameter`](metric_loss_core::LossError) naming the
            /// argument, or an unknown distance or reducer name.
            pub fn build(&self) -> Result<$loss, metric_loss_core::LossError> {
                let $c = self;
                let formula: $formula = $build;
                Ok($loss {
                    name: self.name.clone(),
                    formula,
                    parts: metric_loss_triplet::DenseParts::from_config(&self.distance, &self.reducer)?,
                    config: self.clone(),
                })
            }
        }

        $(#[$loss_doc])*
        #[derive(Debug, Clone)]
        pub struct $loss {
            name: String,
            formula: $formula,
            parts: metric_loss_triplet::DenseParts,
            config: $config,
        }

        impl $loss {
            /// The loss with PML's defaults.
            pub fn new() -> Self {
                $config::default()
                    .build()
                    .expect("the default config is valid")
            }

            /// The config it was built from (`get_config`).
            pub fn config(&self) -> $config {
                self.config.clone()
            }

            /// Its distance and reducer.
            pub fn parts(&self) -> &metric_loss_triplet::DenseParts {
                &self.parts
            }

            /// Its formula, for the driver's tests.
            #[cfg(test)]
            #[allow(dead_code)]
            pub(crate) fn formula(&self) -> &$formula {
                &self.formula
            }
        }

        impl Default for $loss {
            fn default() -> Self {
                Self::new()
            }
        }

        $crate::loss_config::config_serde!($loss, $config);

        $crate::loss_config::impl_metric_loss!($loss, |loss, input, workspace, out| {
            $crate::pairs::run_pairs(&loss.formula, &loss.parts, input, workspace, out)
        }, {});
    };
}
pub(crate) use pair_loss;

/// `PartialEq` (equal configs), `Serialize` (as the config) and `Deserialize` (the config,
/// validated by its `build`) for a loss with a `config: $config` field.
macro_rules! config_serde {
    ($loss:ident, $config:ident) => {
        /// Equal configs (for a loss with parameters, their current values are not
        /// compared).
        impl PartialEq for $loss {
            fn eq(&self, other: &Self) -> bool {
                self.config == other.config
            }
        }

        #[doc = concat!("A `", stringify!($loss), "` serialises as its [`", stringify!($config), "`].")]
        impl serde::Serialize for $loss {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.config.serialize(serializer)
            }
        }

        #[doc = concat!("A `", stringify!($loss), "` deserialises from a [`", stringify!($config), "`], validated by its `build`.")]
        impl<'de> serde::Deserialize<'de> for $loss {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                $config::deserialize(deserializer)?
                    .build()
                    .map_err(D::Error::custom)
            }
        }
    };
}
pub(crate) use config_serde;

/// Implements `MetricLoss` for a loss with a `name` field, both precisions running `$run`
/// (with `$loss` bound to `self`), plus the methods in `$extra`.
macro_rules! impl_metric_loss {
    ($ty:ty, |$loss:ident, $input:ident, $workspace:ident, $out:ident| $run:block, { $($extra:tt)* }) => {
        impl metric_loss_core::MetricLoss for $ty {
            fn name(&self) -> &str {
                &self.name
            }

            fn compute_f32(
                &self,
                $input: &metric_loss_core::LossInput<'_, f32>,
                $workspace: &mut metric_loss_core::Workspace,
                $out: &mut metric_loss_core::LossOutput<f32>,
            ) -> Result<(), metric_loss_core::LossError> {
                let $loss = self;
                $run
            }

            fn compute_f64(
                &self,
                $input: &metric_loss_core::LossInput<'_, f64>,
                $workspace: &mut metric_loss_core::Workspace,
                $out: &mut metric_loss_core::LossOutput<f64>,
            ) -> Result<(), metric_loss_core::LossError> {
                let $loss = self;
                $run
            }

            /// PML's reducers weigh elements (pairs, rows, classes), not examples: not a
            /// Keras reduction.
            fn keras_reduction(&self) -> Option<metric_loss_core::Reduction> {
                None
            }

            $($extra)*
        }
    };
}
pub(crate) use impl_metric_loss;
