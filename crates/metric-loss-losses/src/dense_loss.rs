//! [`dense_loss!`]: a loss over whole rows with TF Similarity's arguments — its config
//! struct (the loss's numbers between `distance` and `name`, `reduction`,
//! `remove_diagonal`), defaults, setters, `build`, the loss struct, `builder`, `config`,
//! `with_parts` and `MetricLoss` — written once, so a loss file holds its docs and its
//! maths.

/// Declares `$config` and `$loss` for a loss on the row driver. Each number is
/// `$field = $default => $check;`: `$check` validates it in `build`, with `$field` bound
/// to the config's value (for example `finite("gamma", gamma)?`). The loss implements
/// `RowLoss` itself (with `row_loss_fields!`).
macro_rules! dense_loss {
    (
        $(#[$config_doc:meta])*
        config: $config:ident,
        $(#[$loss_doc:meta])*
        loss: $loss:ident,
        class: $class:literal,
        distance: $distance:literal,
        fields: {
            $( $(#[$field_doc:meta])* $field:ident = $default:expr => $check:expr; )*
        },
        $(#[$build_doc:meta])*
        build,
        $(#[$with_parts_doc:meta])*
        with_parts,
    ) => {
        $(#[$config_doc])*
        #[derive(Debug, Clone, PartialEq)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        #[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
        pub struct $config {
            #[doc = concat!("A distance name or alias (default `\"", $distance, "\"`), or a registered user distance.")]
            pub distance: metric_loss_core::PartConfig<dyn metric_loss_core::RegisteredDistance>,
            $( $(#[$field_doc])* pub $field: f64, )*
            #[doc = concat!("The loss's name (default `\"", $class, "\"`).")]
            pub name: String,
            /// Keras's reduction name (default `"auto"`), `"mean_over_non_zero"`, or a
            /// registered user reducer.
            pub reduction: metric_loss_core::PartConfig<dyn metric_loss_core::RegisteredReducer>,
            /// Whether the self-pair is removed from the positives (default `true`).
            #[cfg_attr(
                feature = "serde",
                serde(skip_serializing_if = "crate::common::is_true")
            )]
            pub remove_diagonal: bool,
        }

        impl Default for $config {
            fn default() -> Self {
                Self {
                    distance: $distance.into(),
                    $( $field: $default, )*
                    name: $class.into(),
                    reduction: "auto".into(),
                    remove_diagonal: true,
                }
            }
        }

        impl $config {
            metric_loss_core::config_setters! {
                /// Sets `distance` (a name, a built-in distance, or a registered part).
                distance: impl Into<metric_loss_core::PartConfig<dyn metric_loss_core::RegisteredDistance>>,
                $( #[doc = concat!("Sets `", stringify!($field), "`.")] $field: f64, )*
                /// Sets `name`.
                name: impl Into<String>,
                /// Sets `reduction` (a Keras reduction, or a registered user reducer's `Arc`).
                reduction: impl Into<metric_loss_core::PartConfig<dyn metric_loss_core::RegisteredReducer>>,
                /// Sets `remove_diagonal`.
                remove_diagonal: bool,
            }

            $(#[$build_doc])*
            pub fn build(&self) -> Result<$loss, metric_loss_core::LossError> {
                let parts =
                    metric_loss_triplet::DenseParts::from_config(&self.distance, &self.reduction)?;
                $(
                    let $field = self.$field;
                    let $field: f64 = $check;
                )*
                Ok($loss {
                    parts,
                    $( $field, )*
                    name: self.name.clone(),
                    remove_diagonal: self.remove_diagonal,
                })
            }
        }

        $(#[$loss_doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $loss {
            parts: metric_loss_triplet::DenseParts,
            $( $field: f64, )*
            name: String,
            remove_diagonal: bool,
        }

        impl Default for $loss {
            fn default() -> Self {
                $config::default()
                    .build()
                    .expect("the default config is valid")
            }
        }

        impl $loss {
            /// The default arguments, to adjust and `build`.
            pub fn builder() -> $config {
                $config::default()
            }

            /// The loss's arguments (`get_config`): building them again gives an identical
            /// loss.
            ///
            /// # Errors
            /// [`LossError::Unsupported`](metric_loss_core::LossError::Unsupported) when a
            /// part is neither built-in nor registered: a config could not name it.
            pub fn config(&self) -> Result<$config, metric_loss_core::LossError> {
                let (distance, reduction) = self.parts.config(&self.name)?;
                Ok($config {
                    distance,
                    $( $field: self.$field, )*
                    name: self.name.clone(),
                    reduction,
                    remove_diagonal: self.remove_diagonal,
                })
            }

            $(#[$with_parts_doc])*
            pub fn with_parts(&self, parts: metric_loss_triplet::DenseParts) -> Self {
                Self {
                    parts,
                    ..self.clone()
                }
            }

            /// The distance and reducer (each readable there: `loss.parts().distance_kind()`).
            pub fn parts(&self) -> &metric_loss_triplet::DenseParts {
                &self.parts
            }
        }

        metric_loss_triplet::row_metric_loss!($loss);
    };
}
pub(crate) use dense_loss;
