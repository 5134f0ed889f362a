//! [`Toggle`]: a feature that is either switched off or configured.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// A feature that is either switched off (`none` or `false` in YAML) or configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Toggle<T> {
    /// Switched off.
    Off,
    /// Switched on with settings.
    On(T),
}

impl<T> Toggle<T> {
    /// The settings when on.
    pub fn on(&self) -> Option<&T> {
        match self {
            Toggle::Off => None,
            Toggle::On(t) => Some(t),
        }
    }
}

impl<T: Serialize> Serialize for Toggle<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Toggle::Off => s.serialize_str("none"),
            Toggle::On(t) => t.serialize(s),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Toggle<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Toggle<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`none`, `false` or a mapping of settings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "none" | "off" => Ok(Toggle::Off),
                    other => {
                        // Any other word is shorthand for `{kind: word}` where the settings
                        // have a `kind` (e.g. `crop: random_resized`); a wrong word there
                        // keeps its "unknown variant" message, with the valid ones.
                        let one = std::iter::once(("kind", other));
                        match T::deserialize(de::value::MapDeserializer::<_, E>::new(one)) {
                            Ok(t) => Ok(Toggle::On(t)),
                            Err(e) if e.to_string().starts_with("unknown variant") => {
                                Err(E::custom(e.to_string().replacen(
                                    ", expected ",
                                    ", expected `none`, ",
                                    1,
                                )))
                            }
                            Err(_) => Err(E::invalid_value(
                                de::Unexpected::Str(other),
                                &"`none`, `false` or a mapping of settings",
                            )),
                        }
                    }
                }
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                if v {
                    Err(E::invalid_value(
                        de::Unexpected::Bool(true),
                        &"`none`, `false` or a mapping of settings",
                    ))
                } else {
                    Ok(Toggle::Off)
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Toggle::Off)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Toggle::On)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}
