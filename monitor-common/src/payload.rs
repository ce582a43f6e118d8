//! Payload chunks: the bytes the packet programs copy to the ring buffer.
//!
//! A packet's payload is copied in chunks of [`PAYLOAD_CHUNK`] bytes (at most
//! [`PAYLOAD_CHUNKS_PER_PACKET`] per packet), each a [`PayloadEvent`]: a [`PayloadHeader`] that
//! says where the chunk sits in its packet and stream, then the data. Egress chunks are the first
//! payload of a reported socket; ingress chunks are DNS answers.

/// Bytes of payload one ring-buffer chunk carries.
pub const PAYLOAD_CHUNK: usize = 4096;
/// Chunks taken from one packet at most (a GSO packet on loopback can hold a whole flight).
pub const PAYLOAD_CHUNKS_PER_PACKET: u32 = 4;

/// Payload direction (`PayloadHeader.direction`).
pub const DIR_EGRESS: u8 = 1;
pub const DIR_INGRESS: u8 = 2;

/// Header of a payload chunk on the ring buffer; [`PAYLOAD_CHUNK`] bytes of data follow it, of
/// which `len` are valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadHeader {
    /// Always [`crate::event::EVENT_PAYLOAD`].
    pub kind: u32,
    /// TCP sequence number of this chunk's first byte (0 for UDP).
    pub seq: u32,
    pub ts_boot_ns: u64,
    /// Cookie of the socket that sent (egress) or receives (ingress) the packet.
    pub cookie: u64,
    /// Valid bytes in this chunk's data.
    pub len: u32,
    /// Offset of this chunk within the packet's payload.
    pub offset: u32,
    /// Payload bytes in the whole packet.
    pub packet_len: u32,
    /// Ingress DNS answers: the tgid that sent the query on this socket (0 when unknown).
    pub owner_tgid: u32,
    /// Ports in host byte order.
    pub sport: u16,
    pub dport: u16,
    /// [`DIR_EGRESS`] or [`DIR_INGRESS`].
    pub direction: u8,
    /// [`crate::event::PROTO_TCP`] or [`crate::event::PROTO_UDP`].
    pub protocol: u8,
    /// [`crate::event::FAMILY_IPV4`] or [`crate::event::FAMILY_IPV6`] (IPv4-mapped addresses are
    /// not folded here).
    pub family: u8,
    /// The capture mode the chunk was taken in (`crate::capture::CAPTURE_*`; 0 for ingress).
    pub mode: u8,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

/// A payload chunk as written to the ring buffer.
#[repr(C)]
pub struct PayloadEvent {
    pub header: PayloadHeader,
    pub data: [u8; PAYLOAD_CHUNK],
}

#[cfg(feature = "user")]
pub use self::user::Direction;

#[cfg(feature = "user")]
mod user {
    use super::*;

    /// Which way a chunk's packet went (`PayloadHeader.direction`); an unknown value is the `Err`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[repr(u8)]
    pub enum Direction {
        /// Sent by a local socket: a first payload.
        Egress = DIR_EGRESS,
        /// Received by a local socket: a DNS answer.
        Ingress = DIR_INGRESS,
    }

    impl TryFrom<u8> for Direction {
        type Error = u8;

        fn try_from(raw: u8) -> Result<Self, u8> {
            match raw {
                DIR_EGRESS => Ok(Direction::Egress),
                DIR_INGRESS => Ok(Direction::Ingress),
                other => Err(other),
            }
        }
    }
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    #[test]
    fn directions_convert_and_refuse_the_rest() {
        assert_eq!(Direction::try_from(DIR_EGRESS), Ok(Direction::Egress));
        assert_eq!(Direction::try_from(DIR_INGRESS), Ok(Direction::Ingress));
        assert_eq!(Direction::try_from(0), Err(0));
        assert_eq!(Direction::try_from(9), Err(9));
    }
}
