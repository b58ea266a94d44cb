//! The layer's wire messages (`proto/serf.proto`, compiled by prost with protox) and their
//! framing: one tag byte, then the protobuf.
//!
//! | tag | what follows | travels in |
//! |---|---|---|
//! | `S` (0x53) | `Message` (user event, query, response, relay, prune) | swim user payloads |
//! | `P` (0x50) | `PushPullState` (clocks, recent events) | push-pull user state |
//! | `C` (0x43) | `Coordinate` | ack payloads |
//!
//! A payload with another first byte is not the layer's (another user of the same node's user
//! payloads, a newer version): it is ignored and counted, never an error.

use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};

use super::coordinate::Coordinate;

/// The generated messages.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic, clippy::use_self)]
pub(crate) mod wire {
    include!(concat!(env!("OUT_DIR"), "/serf.v1.rs"));
}

pub(crate) use wire::message::Body;

const MESSAGE_TAG: u8 = b'S';
const STATE_TAG: u8 = b'P';
const COORDINATE_TAG: u8 = b'C';

/// Why a payload was not decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("not a serf payload (tag byte {0:#04x})")]
    NotOurs(u8),
    #[error("empty payload")]
    Empty,
    #[error("malformed: {0}")]
    Malformed(String),
}

fn encode_tagged(tag: u8, message: &impl prost::Message) -> Bytes {
    let mut buf = BytesMut::with_capacity(1 + message.encoded_len());
    buf.put_u8(tag);
    // Encoding into a buffer with enough capacity cannot fail.
    let _ = message.encode(&mut buf);
    buf.freeze()
}

fn decode_tagged<M: prost::Message + Default>(tag: u8, bytes: &[u8]) -> Result<M, DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        Some((&first, rest)) if first == tag => {
            M::decode(rest).map_err(|error| DecodeError::Malformed(error.to_string()))
        }
        Some((&first, _)) => Err(DecodeError::NotOurs(first)),
    }
}

/// A user payload: tag and message.
pub(crate) fn encode_message(body: Body) -> Bytes {
    encode_tagged(MESSAGE_TAG, &wire::Message { body: Some(body) })
}

/// The message in a user payload.
pub(crate) fn decode_message(bytes: &[u8]) -> Result<Body, DecodeError> {
    decode_tagged::<wire::Message>(MESSAGE_TAG, bytes)?.body.ok_or(DecodeError::Empty)
}

/// The push-pull user state.
pub(crate) fn encode_state(state: &wire::PushPullState) -> Bytes {
    encode_tagged(STATE_TAG, state)
}

/// The state in a push-pull exchange.
pub(crate) fn decode_state(bytes: &[u8]) -> Result<wire::PushPullState, DecodeError> {
    decode_tagged(STATE_TAG, bytes)
}

/// An ack payload.
pub(crate) fn encode_coordinate(coordinate: &Coordinate) -> Bytes {
    let message = wire::Coordinate {
        vec: coordinate.vec.clone(),
        error: coordinate.error,
        adjustment: coordinate.adjustment,
        height: coordinate.height,
    };
    encode_tagged(COORDINATE_TAG, &message)
}

/// The coordinate in an ack payload (not checked: the Vivaldi client does that).
pub(crate) fn decode_coordinate(bytes: &[u8]) -> Result<Coordinate, DecodeError> {
    let message: wire::Coordinate = decode_tagged(COORDINATE_TAG, bytes)?;
    if message.vec.len() > 64 {
        return Err(DecodeError::Malformed(format!("coordinate of {} dimensions", message.vec.len())));
    }
    Ok(Coordinate { vec: message.vec, error: message.error, adjustment: message.adjustment, height: message.height })
}

pub(crate) fn address(addr: SocketAddr) -> wire::Address {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    wire::Address { ip: Bytes::from(ip), port: u32::from(addr.port()) }
}

pub(crate) fn socket_addr(address: Option<&wire::Address>) -> Option<SocketAddr> {
    let address = address?;
    let port = u16::try_from(address.port).ok()?;
    let ip = match address.ip.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(&address.ip[..]).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(&address.ip[..]).ok()?),
        _ => return None,
    };
    (port != 0 && !ip.is_unspecified()).then_some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refusals() {
        let body = Body::UserEvent(wire::UserEvent {
            ltime: 7,
            name: "deploy".into(),
            payload: Bytes::from_static(b"v2"),
            coalesce: true,
        });
        let bytes = encode_message(body.clone());
        assert_eq!(bytes[0], b'S');
        assert_eq!(decode_message(&bytes), Ok(body));
        assert_eq!(decode_message(b""), Err(DecodeError::Empty));
        assert_eq!(decode_message(b"hello"), Err(DecodeError::NotOurs(b'h')));
        assert!(matches!(decode_message(b"S\xff\xff\xff"), Err(DecodeError::Malformed(_))));
        // A valid tag with an empty message has no body.
        assert_eq!(decode_message(b"S"), Err(DecodeError::Empty));

        let coordinate = Coordinate::new();
        assert_eq!(decode_coordinate(&encode_coordinate(&coordinate)), Ok(coordinate));
        assert!(decode_state(&encode_coordinate(&Coordinate::new())).is_err());

        for addr in ["127.0.0.1:7946", "[::1]:7946"] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(socket_addr(Some(&address(addr))), Some(addr));
        }
        assert_eq!(socket_addr(Some(&wire::Address { ip: Bytes::from_static(&[1, 2, 3]), port: 1 })), None);
        assert_eq!(socket_addr(Some(&wire::Address { ip: Bytes::from_static(&[1, 2, 3, 4]), port: 70000 })), None);
        assert_eq!(socket_addr(None), None);
    }
}
