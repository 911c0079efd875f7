//! Parts as a config file names them: a built-in's name, or a user's registered part.

use std::fmt;
use std::sync::Arc;

use crate::{AnyDistance, AnyMiner, AnyReducer};

/// A [`Distance`](crate::Distance) that a config file can name: `{"class_name": ...,
/// "config": {...}}` with the `serde` feature, registered with
/// `#[typetag::serde(name = "MyDistance")] impl RegisteredDistance for MyDistance {}` (the
/// type implements `Serialize` and `Deserialize` as its config).
#[cfg_attr(
    feature = "serde",
    typetag::serde(tag = "class_name", content = "config")
)]
pub trait RegisteredDistance: AnyDistance {}

/// A [`Miner`](crate::Miner) that a config file can name (see [`RegisteredDistance`]).
#[cfg_attr(
    feature = "serde",
    typetag::serde(tag = "class_name", content = "config")
)]
pub trait RegisteredMiner: AnyMiner {}

/// A [`Reducer`](crate::Reducer) that a config file can name (see [`RegisteredDistance`]).
#[cfg_attr(
    feature = "serde",
    typetag::serde(tag = "class_name", content = "config")
)]
pub trait RegisteredReducer: AnyReducer {}

/// One part of a loss as its config holds it: a built-in's name (TF Similarity's spelling,
/// such as `"cosine"` or `"sum_over_batch_size"`), or a user's registered part, written
/// `{"class_name": ..., "config": {...}}`.
///
/// Two configs' user parts are equal when they are the same value (one `Arc`).
pub enum PartConfig<P: ?Sized> {
    /// A built-in part, by name.
    Name(String),
    /// A registered user part.
    Registered(Arc<P>),
}

impl<P: ?Sized> PartConfig<P> {
    /// The built-in's name, if this is one.
    pub fn name(&self) -> Option<&str> {
        match self {
            PartConfig::Name(name) => Some(name),
            PartConfig::Registered(_) => None,
        }
    }
}

impl<P: ?Sized> Clone for PartConfig<P> {
    fn clone(&self) -> Self {
        match self {
            PartConfig::Name(name) => PartConfig::Name(name.clone()),
            PartConfig::Registered(part) => PartConfig::Registered(Arc::clone(part)),
        }
    }
}

impl<P: ?Sized> PartialEq for PartConfig<P> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PartConfig::Name(a), PartConfig::Name(b)) => a == b,
            (PartConfig::Registered(a), PartConfig::Registered(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl<P: ?Sized + fmt::Debug> fmt::Debug for PartConfig<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartConfig::Name(name) => f.debug_tuple("Name").field(name).finish(),
            PartConfig::Registered(part) => f.debug_tuple("Registered").field(part).finish(),
        }
    }
}

impl<P: ?Sized> From<&str> for PartConfig<P> {
    fn from(name: &str) -> Self {
        PartConfig::Name(name.into())
    }
}

impl<P: ?Sized> From<Arc<P>> for PartConfig<P> {
    fn from(part: Arc<P>) -> Self {
        PartConfig::Registered(part)
    }
}

/// A Keras reduction by its name.
impl From<crate::Reduction> for PartConfig<dyn RegisteredReducer> {
    fn from(reduction: crate::Reduction) -> Self {
        PartConfig::Name(reduction.name().into())
    }
}

impl<P: ?Sized> From<String> for PartConfig<P> {
    fn from(name: String) -> Self {
        PartConfig::Name(name)
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use std::fmt;
    use std::marker::PhantomData;
    use std::sync::Arc;

    use serde::de::{self, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::PartConfig;

    impl<P: ?Sized + Serialize> Serialize for PartConfig<P> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            match self {
                PartConfig::Name(name) => serializer.serialize_str(name),
                PartConfig::Registered(part) => (**part).serialize(serializer),
            }
        }
    }

    /// A string is a built-in's name; a map is a registered part (its class name and config).
    impl<'de, P: ?Sized> Deserialize<'de> for PartConfig<P>
    where
        Box<P>: Deserialize<'de>,
    {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct PartVisitor<P: ?Sized>(PhantomData<Box<P>>);

            impl<'de, P: ?Sized> Visitor<'de> for PartVisitor<P>
            where
                Box<P>: Deserialize<'de>,
            {
                type Value = PartConfig<P>;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str(
                        "a built-in name, or {\"class_name\": ..., \"config\": {...}} naming a registered part",
                    )
                }

                fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
                    Ok(PartConfig::Name(name.into()))
                }

                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                    let part = Box::<P>::deserialize(de::value::MapAccessDeserializer::new(map))?;
                    Ok(PartConfig::Registered(Arc::from(part)))
                }
            }

            deserializer.deserialize_any(PartVisitor(PhantomData))
        }
    }
}
