//! Packet framing: every message is split into packets of a 3-byte little-endian payload
//! length, a 1-byte sequence id, and the payload.
//!
//! A payload of 2^24 - 1 bytes or more is cut into packets of exactly 0xff_ffff bytes
//! followed by a shorter one (possibly empty); the receiver joins them. Sequence ids count
//! up from 0 within one command and its response, wrapping at 256.
//! Reference: <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html>.
//!
//! [`PacketCodec`] is the only thing that touches the socket's bytes (as a tokio-util
//! codec); it checks sequence ids and never holds more than one packet.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::ProtocolError;

/// Largest payload of one packet; a payload this long continues in the next packet.
pub const MAX_PACKET_PAYLOAD: usize = 0xff_ffff;

/// Largest reply joined in memory: an event of 1 GiB (the servers' `max_allowed_packet`
/// limit) plus room. Protects against a corrupt length making us buffer without end.
/// Room kept free in the read buffer for the next socket read.
const READ_SPACE: usize = 256 << 10;

pub const MAX_MESSAGE: usize = (1 << 30) + (1 << 20);

/// One packet as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The payload.
    pub payload: Bytes,
    /// Whether the message continues in the next packet (this one was 2^24 - 1 bytes).
    pub continues: bool,
}

/// Cuts the byte stream into packets and splits outgoing messages into packets.
///
/// It does not join a long message's packets: the caller does, for ordinary replies
/// (bounded by [`MAX_MESSAGE`]), while the binlog stream passes events on piece by piece,
/// so that a huge event never has to sit in memory whole.
#[derive(Debug, Default, Clone)]
pub struct PacketCodec {
    /// The sequence id the next packet must carry (either direction).
    next_sequence: u8,
    /// The largest payload accepted from the peer, if limited (see
    /// [`PacketCodec::limit_payload`]).
    max_payload: Option<usize>,
}

impl PacketCodec {
    /// A codec at the start of a command (sequence id 0).
    pub fn new() -> Self {
        PacketCodec::default()
    }

    /// Starts a new command: the next packet sent carries sequence id 0.
    pub fn reset_sequence(&mut self) {
        self.next_sequence = 0;
    }

    /// A codec in the middle of an exchange, whose next packet carries `sequence`: the
    /// writing half of a connection split in two after a command.
    pub fn at_sequence(sequence: u8) -> Self {
        PacketCodec {
            next_sequence: sequence,
            max_payload: None,
        }
    }

    /// Refuses a packet from the peer whose header announces more than `max` bytes,
    /// before any room is made for it: a server's defence against a client that announces
    /// 16 MiB and sends a trickle (`None`: up to the protocol's 16 MiB).
    pub fn limit_payload(&mut self, max: Option<usize>) {
        self.max_payload = max;
    }

    /// What a packet header announces, refused if over the limit.
    pub fn announced_length(&self, header: &[u8; 4]) -> Result<usize, ProtocolError> {
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        match self.max_payload {
            Some(maximum) if len > maximum => {
                Err(ProtocolError::MessageTooLarge { size: len, maximum })
            }
            _ => Ok(len),
        }
    }
}

impl Decoder for PacketCodec {
    type Item = Packet;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, ProtocolError> {
        // Framed reads into the buffer's spare capacity, which packets split off as
        // `Bytes` leave small: keep room for large reads, or a binlog dump costs a read
        // syscall and an allocation every few KiB.
        if src.capacity() - src.len() < READ_SPACE / 4 {
            src.reserve(READ_SPACE);
        }
        if src.len() < 4 {
            src.reserve(4 - src.len());
            return Ok(None);
        }
        let len = self.announced_length(&[src[0], src[1], src[2], src[3]])?;
        let sequence = src[3];
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        if sequence != self.next_sequence {
            return Err(ProtocolError::PacketOutOfOrder {
                expected: self.next_sequence,
                got: sequence,
            });
        }
        self.next_sequence = sequence.wrapping_add(1);
        src.advance(4);
        Ok(Some(Packet {
            payload: src.split_to(len).freeze(),
            continues: len == MAX_PACKET_PAYLOAD,
        }))
    }
}

impl PacketCodec {
    /// If `src` holds a whole packet, lends its payload to `take` where it lies and then
    /// consumes it: what [`Decoder::decode`] does, without splitting the payload off as
    /// `Bytes` (a reference count taken and dropped per packet, and a shared buffer that
    /// must be copied when it grows). `take` gets the payload and whether the message
    /// continues in the next packet. `None` when the packet is not all there yet.
    pub fn lend<R>(
        &mut self,
        src: &mut BytesMut,
        take: impl FnOnce(&[u8], bool) -> R,
    ) -> Result<Option<R>, ProtocolError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = usize::from(src[0]) | usize::from(src[1]) << 8 | usize::from(src[2]) << 16;
        let sequence = src[3];
        if src.len() < 4 + len {
            return Ok(None);
        }
        if sequence != self.next_sequence {
            return Err(ProtocolError::PacketOutOfOrder {
                expected: self.next_sequence,
                got: sequence,
            });
        }
        self.next_sequence = sequence.wrapping_add(1);
        let taken = take(&src[4..4 + len], len == MAX_PACKET_PAYLOAD);
        src.advance(4 + len);
        Ok(Some(taken))
    }
}

impl PacketCodec {
    /// Frames the message `prefix` + `body` into `dst` without joining them first: a
    /// binlog event sent to a replica (the `0x00` OK byte, then the event), written from
    /// where the event lies.
    pub fn encode_prefixed(&mut self, prefix: u8, body: &[u8], dst: &mut BytesMut) {
        let total = 1 + body.len();
        dst.reserve(total + 4 * (total / MAX_PACKET_PAYLOAD + 1));
        let mut rest = body;
        let mut first = true;
        loop {
            let room = MAX_PACKET_PAYLOAD - usize::from(first);
            let chunk = &rest[..rest.len().min(room)];
            let len = chunk.len() + usize::from(first);
            dst.put_uint_le(len as u64, 3);
            dst.put_u8(self.next_sequence);
            self.next_sequence = self.next_sequence.wrapping_add(1);
            if first {
                dst.put_u8(prefix);
                first = false;
            }
            dst.put_slice(chunk);
            rest = &rest[chunk.len()..];
            if len < MAX_PACKET_PAYLOAD {
                return;
            }
        }
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for PacketCodec {
    type Error = ProtocolError;

    fn encode(&mut self, message: T, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let mut rest = message.as_ref();
        loop {
            let chunk = &rest[..rest.len().min(MAX_PACKET_PAYLOAD)];
            dst.reserve(4 + chunk.len());
            dst.put_uint_le(chunk.len() as u64, 3);
            dst.put_u8(self.next_sequence);
            self.next_sequence = self.next_sequence.wrapping_add(1);
            dst.put_slice(chunk);
            rest = &rest[chunk.len()..];
            // A chunk of exactly the maximum announces more, even if that is empty.
            if chunk.len() < MAX_PACKET_PAYLOAD {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(len: usize) {
        let message: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut wire = BytesMut::new();
        PacketCodec::new()
            .encode(&message, &mut wire)
            .expect("encode");
        let packets = len / MAX_PACKET_PAYLOAD + 1;
        assert_eq!(wire.len(), len + 4 * packets);
        // Feed the bytes in awkward pieces; join the packets as a reader would.
        let mut decoder = PacketCodec::new();
        let mut buffer = BytesMut::new();
        let mut joined = Vec::new();
        let mut seen = 0;
        let mut complete = false;
        for piece in wire.chunks(7_777_777) {
            buffer.extend_from_slice(piece);
            while let Some(packet) = decoder.decode(&mut buffer).expect("decode") {
                seen += 1;
                assert!(packet.payload.len() <= MAX_PACKET_PAYLOAD);
                joined.extend_from_slice(&packet.payload);
                complete = !packet.continues;
            }
        }
        assert!(complete);
        assert_eq!(seen, packets);
        assert!(joined == message);
        assert!(buffer.is_empty());
    }

    #[test]
    fn messages_split_and_join_at_the_16_mib_boundary() {
        for len in [
            0,
            1,
            1000,
            MAX_PACKET_PAYLOAD - 1,
            MAX_PACKET_PAYLOAD,
            MAX_PACKET_PAYLOAD + 1,
            2 * MAX_PACKET_PAYLOAD + 5,
        ] {
            round_trip(len);
        }
    }

    #[test]
    fn a_prefixed_message_frames_as_the_joined_one_does() {
        for len in [
            0,
            5,
            MAX_PACKET_PAYLOAD - 2,
            MAX_PACKET_PAYLOAD - 1,
            MAX_PACKET_PAYLOAD,
            2 * MAX_PACKET_PAYLOAD + 3,
        ] {
            let body: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let mut joined = vec![0u8];
            joined.extend_from_slice(&body);
            let mut expected = BytesMut::new();
            PacketCodec::at_sequence(3)
                .encode(&joined, &mut expected)
                .expect("encode");
            let mut framed = BytesMut::new();
            let mut codec = PacketCodec::at_sequence(3);
            codec.encode_prefixed(0, &body, &mut framed);
            assert!(framed == expected, "{len}");
        }
    }

    #[test]
    fn wrong_sequence_is_an_error() {
        let mut wire = BytesMut::from(&[1u8, 0, 0, 5, 0xaa][..]);
        assert!(matches!(
            PacketCodec::new().decode(&mut wire),
            Err(ProtocolError::PacketOutOfOrder {
                expected: 0,
                got: 5
            })
        ));
    }
}
