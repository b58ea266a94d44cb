//! Just enough MessagePack to talk to HashiCorp Serf's RPC (maps with string keys, strings,
//! integers, booleans, byte strings, arrays, nil, floats). Decoding never panics: bad input is
//! an error.

use std::collections::BTreeMap;
use std::io::Read;

/// A decoded MessagePack value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// nil.
    Nil,
    /// true / false.
    Bool(bool),
    /// Any integer (MessagePack integers fit in i128).
    Int(i128),
    /// float32 or float64.
    Float(f64),
    /// str (Serf's codec writes strings as raw/str).
    Str(String),
    /// bin, or a str that is not UTF-8 (Serf writes IP addresses as raw bytes).
    Bytes(Vec<u8>),
    /// array.
    Array(Vec<Self>),
    /// map (keys as strings; other key types are stringified).
    Map(BTreeMap<String, Self>),
}

impl Value {
    /// The value under `key` of a map.
    pub fn get(&self, key: &str) -> Option<&Self> {
        match self {
            Self::Map(m) => m.get(key),
            _ => None,
        }
    }

    /// As a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// As an integer.
    pub fn as_int(&self) -> Option<i128> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// As bytes (a byte string, or the bytes of a string).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bytes(b) => Some(b),
            Self::Str(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// As an array.
    pub fn as_array(&self) -> Option<&[Self]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Encode a value.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Nil => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(i) => encode_int(*i, out),
        Value::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::Str(s) => {
            let n = s.len();
            if n < 32 {
                out.push(0xa0 | n as u8);
            } else if n < 65_536 {
                // str16 rather than str8: the msgpack codec of older Go programs predates str8.
                out.push(0xda);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            } else {
                out.push(0xdb);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            let n = b.len();
            if n < 256 {
                out.extend_from_slice(&[0xc4, n as u8]);
            } else if n < 65_536 {
                out.push(0xc5);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            } else {
                out.push(0xc6);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            out.extend_from_slice(b);
        }
        Value::Array(a) => {
            encode_len(a.len(), 0x90, 0xdc, out);
            for v in a {
                encode(v, out);
            }
        }
        Value::Map(m) => {
            encode_len(m.len(), 0x80, 0xde, out);
            for (k, v) in m {
                encode(&Value::Str(k.clone()), out);
                encode(v, out);
            }
        }
    }
}

fn encode_len(n: usize, fix: u8, wide: u8, out: &mut Vec<u8>) {
    if n < 16 {
        out.push(fix | n as u8);
    } else if n < 65_536 {
        out.push(wide);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(wide + 1);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn encode_int(i: i128, out: &mut Vec<u8>) {
    if (0..128).contains(&i) {
        out.push(i as u8);
    } else if (-32..0).contains(&i) {
        out.push(i as i8 as u8);
    } else if i >= 0 {
        out.push(0xcf);
        out.extend_from_slice(&(i as u64).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&(i as i64).to_be_bytes());
    }
}

/// A map from `(key, value)` pairs.
pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Decode one value from a reader (a TCP stream: values follow each other with no framing).
pub fn decode(r: &mut impl Read) -> std::io::Result<Value> {
    decode_depth(r, 0)
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("msgpack: {what}"))
}

fn read_n<const N: usize>(r: &mut impl Read) -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn read_vec(r: &mut impl Read, n: usize) -> std::io::Result<Vec<u8>> {
    if n > 64 << 20 {
        return Err(bad("length over 64 MiB"));
    }
    let mut v = vec![0u8; n];
    r.read_exact(&mut v)?;
    Ok(v)
}

fn len16(r: &mut impl Read) -> std::io::Result<usize> {
    Ok(usize::from(u16::from_be_bytes(read_n(r)?)))
}

fn len32(r: &mut impl Read) -> std::io::Result<usize> {
    Ok(u32::from_be_bytes(read_n(r)?) as usize)
}

fn decode_depth(r: &mut impl Read, depth: usize) -> std::io::Result<Value> {
    if depth > 64 {
        return Err(bad("nested too deep"));
    }
    let [t] = read_n::<1>(r)?;
    let str_of = |b: Vec<u8>| match String::from_utf8(b) {
        Ok(s) => Value::Str(s),
        Err(e) => Value::Bytes(e.into_bytes()),
    };
    Ok(match t {
        0x00..=0x7f => Value::Int(i128::from(t)),
        0x80..=0x8f => decode_map(r, usize::from(t & 0x0f), depth)?,
        0x90..=0x9f => decode_array(r, usize::from(t & 0x0f), depth)?,
        0xa0..=0xbf => str_of(read_vec(r, usize::from(t & 0x1f))?),
        0xc0 => Value::Nil,
        0xc2 => Value::Bool(false),
        0xc3 => Value::Bool(true),
        0xc4 => Value::Bytes({
            let [n] = read_n::<1>(r)?;
            read_vec(r, usize::from(n))?
        }),
        0xc5 => {
            let n = len16(r)?;
            Value::Bytes(read_vec(r, n)?)
        }
        0xc6 => {
            let n = len32(r)?;
            Value::Bytes(read_vec(r, n)?)
        }
        0xca => Value::Float(f64::from(f32::from_be_bytes(read_n(r)?))),
        0xcb => Value::Float(f64::from_be_bytes(read_n(r)?)),
        0xcc => Value::Int(i128::from(u8::from_be_bytes(read_n(r)?))),
        0xcd => Value::Int(i128::from(u16::from_be_bytes(read_n(r)?))),
        0xce => Value::Int(i128::from(u32::from_be_bytes(read_n(r)?))),
        0xcf => Value::Int(i128::from(u64::from_be_bytes(read_n(r)?))),
        0xd0 => Value::Int(i128::from(i8::from_be_bytes(read_n(r)?))),
        0xd1 => Value::Int(i128::from(i16::from_be_bytes(read_n(r)?))),
        0xd2 => Value::Int(i128::from(i32::from_be_bytes(read_n(r)?))),
        0xd3 => Value::Int(i128::from(i64::from_be_bytes(read_n(r)?))),
        0xd9 => {
            let [n] = read_n::<1>(r)?;
            str_of(read_vec(r, usize::from(n))?)
        }
        0xda => {
            let n = len16(r)?;
            str_of(read_vec(r, n)?)
        }
        0xdb => {
            let n = len32(r)?;
            str_of(read_vec(r, n)?)
        }
        0xdc => {
            let n = len16(r)?;
            decode_array(r, n, depth)?
        }
        0xdd => {
            let n = len32(r)?;
            decode_array(r, n, depth)?
        }
        0xde => {
            let n = len16(r)?;
            decode_map(r, n, depth)?
        }
        0xdf => {
            let n = len32(r)?;
            decode_map(r, n, depth)?
        }
        0xe0..=0xff => Value::Int(i128::from(t as i8)),
        // Extension types (0xc7-0xc9, 0xd4-0xd8) and the unused 0xc1: Serf sends none.
        other => return Err(bad(&format!("unsupported type byte {other:#04x}"))),
    })
}

fn decode_array(r: &mut impl Read, n: usize, depth: usize) -> std::io::Result<Value> {
    let mut a = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        a.push(decode_depth(r, depth + 1)?);
    }
    Ok(Value::Array(a))
}

fn decode_map(r: &mut impl Read, n: usize, depth: usize) -> std::io::Result<Value> {
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let k = match decode_depth(r, depth + 1)? {
            Value::Str(s) => s,
            Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
            other => format!("{other:?}"),
        };
        m.insert(k, decode_depth(r, depth + 1)?);
    }
    Ok(Value::Map(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = map([
            ("Command", Value::Str("members".into())),
            ("Seq", Value::Int(300)),
            ("Neg", Value::Int(-5)),
            ("Big", Value::Int(-100_000)),
            ("Addr", Value::Bytes(vec![127, 0, 1, 10])),
            ("Ok", Value::Bool(true)),
            ("List", Value::Array(vec![Value::Nil, Value::Float(1.5), Value::Str("x".repeat(40))])),
        ]);
        let mut out = Vec::new();
        encode(&v, &mut out);
        let back = decode(&mut out.as_slice()).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.get("Seq").and_then(Value::as_int), Some(300));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&[0xc1u8][..], &[0xdb, 0xff, 0xff, 0xff, 0xff], &[0x92, 0x01], &[0xd9]] {
            assert!(decode(&mut &bytes[..]).is_err());
        }
    }
}
