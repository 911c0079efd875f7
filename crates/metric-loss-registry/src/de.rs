//! A deserializer over `serde_json::Value` whose error keeps serde's structure (unknown
//! field, invalid type...) and the path of the failing value, so that the registry can
//! return typed errors. `erased_serde` (inside typetag) preserves that structure.

use std::fmt;

use serde::de::{
    self, value::StrDeserializer, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess,
    SeqAccess, Visitor,
};
use serde_json::Value;

/// What went wrong, as serde reported it.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Custom(String),
    InvalidType {
        unexpected: String,
        expected: String,
    },
    InvalidValue {
        unexpected: String,
        expected: String,
    },
    InvalidLength {
        len: usize,
        expected: String,
    },
    UnknownVariant {
        variant: String,
        expected: &'static [&'static str],
    },
    UnknownField {
        field: String,
        expected: &'static [&'static str],
    },
    MissingField(&'static str),
    DuplicateField(&'static str),
}

/// A structured deserialisation error and the keys leading to it (innermost first).
#[derive(Debug, Clone)]
pub(crate) struct DeError {
    pub(crate) kind: Kind,
    rev_path: Vec<String>,
}

impl DeError {
    fn at(mut self, key: impl Into<String>) -> Self {
        self.rev_path.push(key.into());
        self
    }

    /// The dotted path of the failing value (e.g. `config.margin`).
    pub(crate) fn path(&self) -> String {
        let parts: Vec<&str> = self.rev_path.iter().rev().map(String::as_str).collect();
        parts.join(".")
    }

    fn new(kind: Kind) -> Self {
        Self {
            kind,
            rev_path: Vec::new(),
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Custom(m) => f.write_str(m),
            Kind::InvalidType {
                unexpected,
                expected,
            } => {
                write!(f, "invalid type: {unexpected}, expected {expected}")
            }
            Kind::InvalidValue {
                unexpected,
                expected,
            } => {
                write!(f, "invalid value: {unexpected}, expected {expected}")
            }
            Kind::InvalidLength { len, expected } => {
                write!(f, "invalid length {len}, expected {expected}")
            }
            Kind::UnknownVariant { variant, expected } => {
                write!(
                    f,
                    "unknown variant {variant:?}, expected one of {expected:?}"
                )
            }
            Kind::UnknownField { field, expected } => {
                write!(f, "unknown field {field:?}, expected one of {expected:?}")
            }
            Kind::MissingField(field) => write!(f, "missing field {field:?}"),
            Kind::DuplicateField(field) => write!(f, "duplicate field {field:?}"),
        }
    }
}

impl std::error::Error for DeError {}

/// The message of an error kind, without its path.
pub(crate) fn describe(kind: &Kind) -> String {
    DeError::new(kind.clone()).to_string()
}

thread_local! {
    /// The last error this deserializer returned. typetag's `erased_serde` layer turns an
    /// error crossing it from the inside into `custom(its message)`; `custom` recognises the
    /// message and restores the structured error (kind and path).
    static LAST: std::cell::RefCell<Option<DeError>> = const { std::cell::RefCell::new(None) };
}

fn remember<T>(result: Result<T, DeError>) -> Result<T, DeError> {
    if let Err(e) = &result {
        LAST.with(|last| *last.borrow_mut() = Some(e.clone()));
    }
    result
}

/// Forgets the remembered error (before a new deserialisation).
pub(crate) fn forget() {
    LAST.with(|last| last.borrow_mut().take());
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let msg = msg.to_string();
        let known = LAST.with(|last| {
            last.borrow()
                .as_ref()
                .filter(|e| e.to_string() == msg)
                .cloned()
        });
        known.unwrap_or_else(|| Self::new(Kind::Custom(msg)))
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(Kind::InvalidType {
            unexpected: unexp.to_string(),
            expected: exp.to_string(),
        })
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(Kind::InvalidValue {
            unexpected: unexp.to_string(),
            expected: exp.to_string(),
        })
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        Self::new(Kind::InvalidLength {
            len,
            expected: exp.to_string(),
        })
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::new(Kind::UnknownVariant {
            variant: variant.to_owned(),
            expected,
        })
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::new(Kind::UnknownField {
            field: field.to_owned(),
            expected,
        })
    }

    fn missing_field(field: &'static str) -> Self {
        Self::new(Kind::MissingField(field))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::new(Kind::DuplicateField(field))
    }
}

/// Deserializes from a borrowed JSON value with [`DeError`] errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueDeserializer<'a>(pub(crate) &'a Value);

impl<'de> IntoDeserializer<'de, DeError> for ValueDeserializer<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for ValueDeserializer<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        remember(self.any(visitor))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        remember(match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        })
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        remember(visitor.visit_newtype_struct(self))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        remember(match self.0 {
            Value::String(s) => visitor.visit_enum(StrDeserializer::<DeError>::new(s)),
            Value::Object(map) if map.len() == 1 => de::value::MapAccessDeserializer::new(Map {
                entries: map.iter(),
                pending: None,
            })
            .deserialize_enum(name, variants, visitor),
            _ => self.any(visitor),
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl ValueDeserializer<'_> {
    fn any<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_str(s),
            Value::Array(items) => visitor.visit_seq(Seq {
                items: items.iter().enumerate(),
            }),
            Value::Object(map) => visitor.visit_map(Map {
                entries: map.iter(),
                pending: None,
            }),
        }
    }
}

/// A map key; like serde's `StrDeserializer`, but it remembers its errors (an unknown
/// field is reported while the key is deserialised, inside typetag's erased layer).
struct KeyDeserializer<'a>(&'a str);

impl<'de> Deserializer<'de> for KeyDeserializer<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        remember(visitor.visit_str(self.0))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct Seq<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
}

impl<'de> SeqAccess<'de> for Seq<'_> {
    type Error = DeError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, v)) => remember(
                seed.deserialize(ValueDeserializer(v))
                    .map(Some)
                    .map_err(|e| e.at(format!("[{i}]"))),
            ),
        }
    }
}

struct Map<'a> {
    entries: serde_json::map::Iter<'a>,
    pending: Option<(&'a String, &'a Value)>,
}

impl<'de> MapAccess<'de> for Map<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            None => Ok(None),
            Some((k, v)) => {
                self.pending = Some((k, v));
                remember(seed.deserialize(KeyDeserializer(k)).map(Some))
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.pending.take() {
            Some((k, v)) => remember(
                seed.deserialize(ValueDeserializer(v))
                    .map_err(|e| e.at(k.as_str())),
            ),
            None => Err(de::Error::custom(
                "a map value was requested before its key",
            )),
        }
    }
}
