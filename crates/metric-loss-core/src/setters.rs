//! [`config_setters!`](crate::config_setters): the chained setters of a loss's config
//! struct, written once.

/// Writes one chained setter per field of a config struct: `fn field(mut self, value: T) ->
/// Self`, with the docs given, storing `value.into()` (so a `String` field can take
/// `impl Into<String>`).
///
/// ```
/// use metric_loss_core::config_setters;
///
/// #[derive(Debug, Default)]
/// pub struct MyLossConfig {
///     /// The scale.
///     pub scale: f64,
///     /// The loss's name.
///     pub name: String,
/// }
///
/// impl MyLossConfig {
///     config_setters! {
///         /// Sets `scale`.
///         scale: f64,
///         /// Sets `name`.
///         name: impl Into<String>,
///     }
/// }
///
/// let c = MyLossConfig::default().scale(0.5).name("mine");
/// assert_eq!((c.scale, c.name.as_str()), (0.5, "mine"));
/// ```
#[macro_export]
macro_rules! config_setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $field(mut self, value: $ty) -> Self {
                self.$field = value.into();
                self
            }
        )*
    };
}
