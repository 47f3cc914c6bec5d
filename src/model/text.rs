//! Values read from text the same way wherever the text comes from: a type that parses with
//! `FromStr` deserializes with it too, so the command line and the config file agree on every
//! value and every error.

/// `Deserialize` for types that already parse with `FromStr`: from a string, through it.
#[macro_export]
macro_rules! deserialize_from_str {
    ($($type:ty),+ $(,)?) => {$(
        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )+};
}
