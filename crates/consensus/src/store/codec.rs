//! Values on disk: a CRC32 of the payload (little-endian) followed by the payload, postcard.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes `value` with its checksum in front.
pub(crate) fn seal<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    let body = postcard::to_allocvec(value)?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Checks the checksum and decodes; the error says which of the two failed.
pub(crate) fn open<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let Some((sum, body)) = bytes.split_first_chunk::<4>() else {
        return Err(format!("{} bytes, shorter than a checksum", bytes.len()));
    };
    let expected = u32::from_le_bytes(*sum);
    let actual = crc32fast::hash(body);
    if expected != actual {
        return Err(format!("checksum mismatch (stored {expected:#010x}, computed {actual:#010x})"));
    }
    match postcard::take_from_bytes(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!("{} trailing bytes", rest.len())),
        Err(e) => Err(format!("does not decode: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let sealed = seal(&(7u64, "seven".to_string())).unwrap();
        assert_eq!(open::<(u64, String)>(&sealed).unwrap(), (7, "seven".into()));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(open::<(u64, String)>(&flipped).unwrap_err().contains("checksum mismatch"));
        assert!(open::<(u64, String)>(&sealed[..2]).unwrap_err().contains("shorter"));
    }
}
