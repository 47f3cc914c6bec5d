//! HdrHistogram's standard interchange encoding: V2 with DEFLATE, in base64. It is what
//! HdrHistogram's own log files hold and what the Java, C, Python, Go and Rust decoders read,
//! so a user can merge or re-analyse a saved step with any HdrHistogram tool.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

/// The histogram in the interchange encoding; empty only for a histogram that cannot be
/// encoded at all (never one this crate builds).
pub fn encode(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    match V2DeflateSerializer::new().serialize(histogram, &mut bytes) {
        Ok(_) => STANDARD.encode(bytes),
        Err(_) => String::new(),
    }
}

/// A histogram from the interchange encoding (V2, compressed or not: the reader takes both).
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|err| format!("not base64: {err}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|err| format!("not an HdrHistogram V2 encoding: {err:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_survives_the_round_trip_and_is_compressed() {
        let mut histogram = crate::model::step::histogram();
        for us in [120u64, 450, 450, 9_000, 2_000_000] {
            histogram.record(us).unwrap();
        }
        let text = encode(&histogram);
        let bytes = STANDARD.decode(&text).unwrap();
        // The V2 compressed cookie (0x1c849304, word size 8) that standard decoders look for.
        assert_eq!(&bytes[..4], &0x1c84_9314u32.to_be_bytes());
        let back = decode(&text).unwrap();
        assert_eq!(back, histogram);
        assert_eq!(back.len(), 5);
        assert!(decode("not base64!").is_err());
    }
}
