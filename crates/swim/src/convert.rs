//! Conversions between wire messages and membership types. Everything from the network is
//! checked: a bad address or oversized tags is an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use gossip_transport::wire;
use membership::{AliveClaim, Incarnation, Member, ProtocolRange, State, Tags};

/// Protocol versions this build speaks.
pub const PROTOCOL: ProtocolRange = ProtocolRange { min: 1, max: 1, cur: 1 };

/// Why a message could not be turned into a claim; counted as a drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConvertError {
    Address,
    Tags,
    Name,
}

impl ConvertError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Address => "bad_address",
            Self::Tags => "bad_tags",
            Self::Name => "bad_name",
        }
    }
}

/// Longest node name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

pub(crate) fn address(addr: SocketAddr) -> wire::Address {
    let ip = match addr.ip() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    wire::Address { ip: ip.into(), port: u32::from(addr.port()) }
}

pub(crate) fn socket_addr(addr: Option<&wire::Address>) -> Result<SocketAddr, ConvertError> {
    let addr = addr.ok_or(ConvertError::Address)?;
    let port = u16::try_from(addr.port).map_err(|_| ConvertError::Address)?;
    let ip = match addr.ip.len() {
        4 => {
            let o: [u8; 4] = addr.ip[..].try_into().map_err(|_| ConvertError::Address)?;
            IpAddr::V4(Ipv4Addr::from(o))
        }
        16 => {
            let o: [u8; 16] = addr.ip[..].try_into().map_err(|_| ConvertError::Address)?;
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return Err(ConvertError::Address),
    };
    Ok(SocketAddr::new(ip, port))
}

pub(crate) fn tags_to_wire(tags: &Tags) -> Vec<wire::Tag> {
    tags.iter().map(|(k, v)| wire::Tag { key: k.to_owned(), value: v.to_owned() }).collect()
}

pub(crate) fn tags_from_wire(tags: &[wire::Tag]) -> Result<Tags, ConvertError> {
    Tags::from_pairs(tags.iter().map(|t| (t.key.clone(), t.value.clone()))).map_err(|_| ConvertError::Tags)
}

pub(crate) fn check_name(name: &str) -> Result<(), ConvertError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        Err(ConvertError::Name)
    } else {
        Ok(())
    }
}

pub(crate) fn incarnation(generation: u64, incarnation: u64) -> Incarnation {
    Incarnation { generation, incarnation }
}

pub(crate) fn alive_to_wire(claim: &AliveClaim) -> wire::Alive {
    wire::Alive {
        node: claim.name.to_string(),
        generation: claim.incarnation.generation,
        incarnation: claim.incarnation.incarnation,
        addr: Some(address(claim.addr)),
        tags: tags_to_wire(&claim.tags),
        protocol_min: claim.protocol.min,
        protocol_max: claim.protocol.max,
        protocol_cur: claim.protocol.cur,
    }
}

pub(crate) fn alive_from_wire(alive: &wire::Alive) -> Result<AliveClaim, ConvertError> {
    check_name(&alive.node)?;
    Ok(AliveClaim {
        name: alive.node.as_str().into(),
        addr: socket_addr(alive.addr.as_ref())?,
        incarnation: incarnation(alive.generation, alive.incarnation),
        tags: tags_from_wire(&alive.tags)?,
        protocol: ProtocolRange { min: alive.protocol_min, max: alive.protocol_max, cur: alive.protocol_cur },
    })
}

pub(crate) fn member_to_wire(m: &Member) -> wire::MemberState {
    let status = match m.state {
        State::Alive => wire::MemberStatus::Alive,
        State::Suspect => wire::MemberStatus::Suspect,
        State::Dead => wire::MemberStatus::Dead,
        State::Left => wire::MemberStatus::Left,
    };
    wire::MemberState {
        node: m.name.to_string(),
        generation: m.incarnation.generation,
        incarnation: m.incarnation.incarnation,
        addr: Some(address(m.addr)),
        tags: tags_to_wire(&m.tags),
        status: status as i32,
        protocol_min: m.protocol.min,
        protocol_max: m.protocol.max,
        protocol_cur: m.protocol.cur,
    }
}

pub(crate) fn member_from_wire(m: &wire::MemberState) -> Result<(AliveClaim, State), ConvertError> {
    check_name(&m.node)?;
    let state = match wire::MemberStatus::try_from(m.status) {
        Ok(wire::MemberStatus::Alive) => State::Alive,
        Ok(wire::MemberStatus::Suspect) => State::Suspect,
        Ok(wire::MemberStatus::Dead) => State::Dead,
        Ok(wire::MemberStatus::Left) => State::Left,
        Err(_) => return Err(ConvertError::Name),
    };
    let claim = AliveClaim {
        name: m.node.as_str().into(),
        addr: socket_addr(m.addr.as_ref())?,
        incarnation: incarnation(m.generation, m.incarnation),
        tags: tags_from_wire(&m.tags)?,
        protocol: ProtocolRange { min: m.protocol_min, max: m.protocol_max, cur: m.protocol_cur },
    };
    Ok((claim, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_bad_ones_are_refused() {
        for a in ["127.0.0.1:7946", "[::1]:8301", "10.1.2.3:0"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(socket_addr(Some(&address(a))), Ok(a));
        }
        assert!(socket_addr(None).is_err());
        let bad = wire::Address { ip: vec![1, 2, 3].into(), port: 1 };
        assert!(socket_addr(Some(&bad)).is_err());
        let bad_port = wire::Address { ip: vec![1, 2, 3, 4].into(), port: 70_000 };
        assert!(socket_addr(Some(&bad_port)).is_err());
    }
}
