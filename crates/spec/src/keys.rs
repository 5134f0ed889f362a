//! Mapping keys that are not names (`1: x`, `true: c`, `[a]: b`), found in the spec text so the
//! error can give their line: once the text is a YAML tree the positions are gone.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// The first mapping key in `src` that is not a string: the dotted path of the mapping that
/// holds it (empty at the top level), its 1-based line and column, and what the key is in
/// words. `None` when every key is a name (or the text does not parse; the parser reports that).
pub fn first_non_string(src: &str) -> Option<(String, usize, usize, String)> {
    let e = serde_yaml::from_str::<Keys>(src).err()?;
    let loc = e.location()?;
    // serde_yaml writes "PATH: MESSAGE at line L column C", PATH being the mapping that holds
    // the key (absent at the top level).
    let text = e.to_string();
    let (parent, what) = text.split_once(NOT_A_NAME)?;
    let parent = parent.strip_suffix(": ").unwrap_or(parent);
    let what = match what.find(" at line ") {
        Some(i) => &what[..i],
        None => what,
    };
    Some((
        parent.to_string(),
        loc.line(),
        loc.column(),
        what.to_string(),
    ))
}

const NOT_A_NAME: &str = "key is not a name: ";

/// Any YAML value; fails on the first mapping key that is not a string.
struct Keys;

/// A mapping key that must be a string.
struct Key;

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KeysVisitor)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KeyVisitor)
    }
}

struct KeysVisitor;

impl<'de> Visitor<'de> for KeysVisitor {
    type Value = Keys;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Keys, E> {
        Ok(Keys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Keys, E> {
        Ok(Keys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Keys, E> {
        Ok(Keys)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Keys, E> {
        Ok(Keys)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Keys, E> {
        Ok(Keys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Keys, E> {
        Ok(Keys)
    }
    fn visit_str<E>(self, _: &str) -> Result<Keys, E> {
        Ok(Keys)
    }
    fn visit_unit<E>(self) -> Result<Keys, E> {
        Ok(Keys)
    }
    fn visit_none<E>(self) -> Result<Keys, E> {
        Ok(Keys)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Keys, D::Error> {
        Keys::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Keys, A::Error> {
        while seq.next_element::<Keys>()?.is_some() {}
        Ok(Keys)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
        while map.next_key::<Key>()?.is_some() {
            map.next_value::<Keys>()?;
        }
        Ok(Keys)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Keys, A::Error> {
        // A tagged value (`!tag value`): look inside the value.
        use de::VariantAccess;
        let (IgnoredAny, value) = data.variant::<IgnoredAny>()?;
        value.newtype_variant::<Keys>()
    }
}

struct KeyVisitor;

impl KeyVisitor {
    fn refuse<E: de::Error>(what: String) -> Result<Key, E> {
        Err(E::custom(format!("{NOT_A_NAME}{what}")))
    }
}

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key name")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Key, E> {
        Ok(Key)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
        Self::refuse(format!("the boolean `{v}`"))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
        Self::refuse(format!("the number `{v}`"))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
        Self::refuse(format!("the number `{v}`"))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Key, E> {
        Self::refuse(format!("the number `{v}`"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Key, E> {
        Self::refuse(format!("the number `{v}`"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
        Self::refuse(format!("the number `{v}`"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
        Self::refuse("an empty key (null)".into())
    }
    fn visit_none<E: de::Error>(self) -> Result<Key, E> {
        Self::refuse("an empty key (null)".into())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        Key::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Key, A::Error> {
        Self::refuse("a list".into())
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Key, A::Error> {
        Self::refuse("a mapping".into())
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Key, A::Error> {
        Self::refuse("a tagged value".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_key_that_is_not_a_name_with_its_line() {
        let src = "model:\n  wrn: {depth: 10}\n  1: x\n";
        assert_eq!(
            first_non_string(src),
            Some(("model".into(), 3, 3, "the number `1`".into()))
        );
        let src = "train:\n  epochs: 3\n  true: c\n";
        let (path, line, _, what) = first_non_string(src).unwrap();
        assert_eq!(
            (path.as_str(), line, what.as_str()),
            ("train", 3, "the boolean `true`")
        );
        let src = "model:\n  wrn: {depth: 10}\n  [a]: b\n";
        let (path, line, _, what) = first_non_string(src).unwrap();
        assert_eq!((path.as_str(), line, what.as_str()), ("model", 3, "a list"));
        let (path, line, _, _) = first_non_string("name: a\n7: b\n").unwrap();
        assert_eq!((path.as_str(), line), ("", 2));
        let (path, line, _, _) =
            first_non_string("model:\n  layers:\n  - op: conv\n    5: 1\n").unwrap();
        assert_eq!((path.as_str(), line), ("model.layers[0]", 4));
    }

    #[test]
    fn names_pass() {
        assert_eq!(first_non_string("a: {b: [1, {c: 2}]}\n'1': x\n"), None);
        assert_eq!(first_non_string(""), None);
    }
}
