//! Compound packets: filling one `Packet` body with as many messages as the budget allows.
//!
//! A `Packet` body is the protobuf encoding of `repeated Message messages = 1`, which is simply
//! each message prefixed by its field key (`0x0a`) and its length as a varint. Messages can
//! therefore be encoded once (for the broadcast queue) and copied into many packets.

use bytes::Bytes;
use prost::encoding::{encode_varint, encoded_len_varint};
use prost::Message as _;

use crate::wire;

/// Field key of `Packet.messages`: field 1, wire type 2 (length-delimited).
const MESSAGES_KEY: u8 = 0x0a;

/// Encodes one message on its own, for the broadcast queue: encode once, then
/// [`PacketBuilder::push_encoded`] into as many packets as needed.
pub fn encode_message(msg: &wire::Message) -> Bytes {
    Bytes::from(msg.encode_to_vec())
}

/// The body of a compound packet holding `messages`, in order.
pub(crate) fn encode_packet_body(messages: &[wire::Message]) -> Vec<u8> {
    let len = messages.iter().map(|m| PacketBuilder::message_cost(m.encoded_len())).sum();
    let mut body = Vec::with_capacity(len);
    for msg in messages {
        append(&mut body, msg);
    }
    body
}

fn append(body: &mut Vec<u8>, msg: &wire::Message) {
    body.push(MESSAGES_KEY);
    encode_varint(msg.encoded_len() as u64, body);
    // Writing into a Vec cannot run out of capacity.
    msg.encode_raw(body);
}

/// Fills one packet body (a protobuf `Packet`) with messages, never exceeding its byte budget.
///
/// ```
/// use gossip_transport::{wire, Codec, PacketBuilder, DEFAULT_PACKET_BUDGET};
///
/// let codec = Codec::new("prod").unwrap();
/// let mut builder = PacketBuilder::new(codec.body_budget(DEFAULT_PACKET_BUDGET));
/// let nack = wire::Message { body: Some(wire::message::Body::Nack(wire::Nack { seq: 1 })) };
/// assert!(builder.push(&nack));
/// let datagram = codec.seal(&builder.finish(), &mut rand::rng());
/// assert!(datagram.len() <= DEFAULT_PACKET_BUDGET);
/// assert_eq!(codec.decode_packet(&datagram).unwrap(), [nack]);
/// ```
#[derive(Clone, Debug)]
pub struct PacketBuilder {
    budget: usize,
    body: Vec<u8>,
    messages: usize,
}

impl PacketBuilder {
    /// An empty builder for a body of at most `body_budget` bytes; pass
    /// `packet_budget - codec.overhead()` (see [`Codec::body_budget`](crate::Codec::body_budget)).
    pub fn new(body_budget: usize) -> Self {
        Self { budget: body_budget, body: Vec::with_capacity(body_budget.min(64 * 1024)), messages: 0 }
    }

    /// Bytes one message of `encoded_len` bytes adds to the body: its field key (1 byte), its
    /// length as a varint (1 to 10 bytes), and the message itself.
    pub fn message_cost(encoded_len: usize) -> usize {
        1 + encoded_len_varint(encoded_len as u64) + encoded_len
    }

    /// Appends an already-encoded `Message` (from [`encode_message`]) if it fits; returns `false`
    /// and adds nothing if it does not. The bytes are not checked.
    pub fn push_encoded(&mut self, encoded_message: &[u8]) -> bool {
        if Self::message_cost(encoded_message.len()) > self.remaining() {
            return false;
        }
        self.body.push(MESSAGES_KEY);
        encode_varint(encoded_message.len() as u64, &mut self.body);
        self.body.extend_from_slice(encoded_message);
        self.messages += 1;
        true
    }

    /// Encodes and appends `msg` if it fits; returns `false` and adds nothing if it does not.
    pub fn push(&mut self, msg: &wire::Message) -> bool {
        if Self::message_cost(msg.encoded_len()) > self.remaining() {
            return false;
        }
        append(&mut self.body, msg);
        self.messages += 1;
        true
    }

    /// Bytes still free in the body. A message fits if its
    /// [`message_cost`](Self::message_cost) is at most this.
    pub fn remaining(&self) -> usize {
        self.budget.saturating_sub(self.body.len())
    }

    /// Number of messages pushed.
    pub fn len(&self) -> usize {
        self.messages
    }

    /// Whether no message was pushed (an empty body is refused by the receiver).
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// The packet body, to seal with [`Codec::seal`](crate::Codec::seal).
    pub fn finish(self) -> Bytes {
        Bytes::from(self.body)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn user(len: usize) -> wire::Message {
        wire::Message { body: Some(wire::message::Body::User(wire::User { payload: vec![1; len].into() })) }
    }

    #[test]
    fn cost_matches_prost() {
        for len in [0, 1, 100, 126, 127, 128, 300, 16_383, 16_384, 70_000] {
            let msg = user(len);
            let alone = wire::Packet { messages: vec![msg.clone()] }.encoded_len();
            assert_eq!(PacketBuilder::message_cost(msg.encoded_len()), alone);
        }
    }

    #[test]
    fn body_equals_prost_encoding() {
        let messages = vec![user(3), user(200), user(0)];
        let expected = wire::Packet { messages: messages.clone() }.encode_to_vec();
        assert_eq!(encode_packet_body(&messages), expected);

        let mut builder = PacketBuilder::new(1000);
        assert!(builder.push(&messages[0]));
        assert!(builder.push_encoded(&encode_message(&messages[1])));
        assert!(builder.push(&messages[2]));
        assert_eq!(builder.len(), 3);
        assert_eq!(builder.finish(), expected);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let msg = user(10);
        let cost = PacketBuilder::message_cost(msg.encoded_len());
        let mut builder = PacketBuilder::new(2 * cost + 1);
        assert!(builder.is_empty());
        assert!(builder.push(&msg));
        assert!(builder.push_encoded(&encode_message(&msg)));
        assert_eq!(builder.remaining(), 1);
        assert!(!builder.push(&msg));
        assert!(!builder.push_encoded(&encode_message(&msg)));
        assert_eq!(builder.len(), 2);
        assert_eq!(builder.finish().len(), 2 * cost);

        let mut tiny = PacketBuilder::new(0);
        assert!(!tiny.push(&user(0)));
        assert!(tiny.is_empty());
        assert!(tiny.finish().is_empty());
    }
}
