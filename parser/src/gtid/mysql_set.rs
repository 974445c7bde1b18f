//! MySQL GTID sets: `uuid[:tag]:a-b:c,...` and their binary encoding.
//!
//! Text (<https://dev.mysql.com/doc/refman/8.4/en/replication-gtids-concepts.html#replication-gtids-concepts-gtid-sets>):
//! sources separated by `,`; each is a UUID followed by `:`-separated intervals (`7` or
//! `1-5`, inclusive), and from MySQL 8.3 by tags that apply to the intervals after them:
//! `uuid:1-5:batch:1-3`. The canonical form (what [`fmt::Display`] prints and MySQL's
//! `@@gtid_executed` shows) sorts sources and intervals and merges adjacent intervals.
//!
//! Binary (PREVIOUS_GTIDS and COM_BINLOG_DUMP_GTID; `Gtid_set::encode` in MySQL's
//! `sql/rpl_gtid_set.cc`), all integers little-endian:
//! ```text
//! untagged: n_sids u64, then per source: uuid [16], n_intervals u64,
//!           n_intervals × (start u64, end u64 exclusive)
//! tagged:   header u64 = 1 << 56 | n_sids << 8 | 1, then per (uuid, tag): uuid [16],
//!           tag length << 1 (one byte), tag bytes, n_intervals u64, intervals as above
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::mariadb::ParseGtidError;
use super::mysql::{MAX_TAG_LEN, MysqlGtid, Tag, Uuid};
use crate::error::ErrorKind;

/// The largest transaction number plus one (GNOs are below 2^63 - 1).
const GNO_END: u64 = i64::MAX as u64;

/// A set of MySQL GTIDs.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct MysqlGtidSet {
    /// Per source, sorted half-open intervals `[start, end)`, never empty, never touching.
    sources: BTreeMap<(Uuid, Tag), Vec<(u64, u64)>>,
}

impl MysqlGtidSet {
    /// The empty set.
    pub fn new() -> Self {
        MysqlGtidSet::default()
    }

    /// Whether the set holds no GTID.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// How many GTIDs the set holds.
    pub fn len(&self) -> u64 {
        self.sources.values().flatten().map(|(s, e)| e - s).sum()
    }

    /// Adds one GTID.
    pub fn insert(&mut self, gtid: MysqlGtid) {
        self.insert_interval(gtid.uuid, gtid.tag, gtid.gno, gtid.gno + 1);
    }

    /// Adds the transactions `start..end` (end exclusive) of a source. Empty or invalid
    /// ranges (start 0, beyond the largest GNO) are clamped.
    pub fn insert_interval(&mut self, uuid: Uuid, tag: Tag, start: u64, end: u64) {
        let (start, end) = (start.max(1), end.min(GNO_END));
        if start >= end {
            return;
        }
        let intervals = self.sources.entry((uuid, tag)).or_default();
        // Intervals that overlap or touch [start, end) merge with it.
        let first = intervals.partition_point(|&(_, e)| e < start);
        let last = intervals.partition_point(|&(s, _)| s <= end);
        let (mut new_start, mut new_end) = (start, end);
        if first < last {
            new_start = new_start.min(intervals[first].0);
            new_end = new_end.max(intervals[last - 1].1);
        }
        intervals.splice(first..last, [(new_start, new_end)]);
    }

    /// Adds many intervals of one source at once: sorted and merged in one pass, so that
    /// a set of a million intervals in any order costs a sort, not a million insertions
    /// into the middle of a vector (what a hostile replica's dump request could send).
    fn absorb(&mut self, uuid: Uuid, tag: Tag, mut added: Vec<(u64, u64)>) {
        let intervals = self.sources.entry((uuid, tag)).or_default();
        added.append(intervals);
        added.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(added.len());
        for (start, end) in added {
            match merged.last_mut() {
                // Overlapping or touching: one interval.
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        *intervals = merged;
    }

    /// Whether the set holds `gtid`.
    pub fn contains(&self, gtid: &MysqlGtid) -> bool {
        self.sources
            .get(&(gtid.uuid, gtid.tag))
            .is_some_and(|intervals| {
                let i = intervals.partition_point(|&(_, e)| e <= gtid.gno);
                intervals.get(i).is_some_and(|&(s, _)| s <= gtid.gno)
            })
    }

    /// Every GTID in either set.
    pub fn union(&self, other: &MysqlGtidSet) -> MysqlGtidSet {
        let mut out = self.clone();
        for (&(uuid, tag), intervals) in &other.sources {
            for &(s, e) in intervals {
                out.insert_interval(uuid, tag, s, e);
            }
        }
        out
    }

    /// The GTIDs of `self` not in `other`.
    pub fn difference(&self, other: &MysqlGtidSet) -> MysqlGtidSet {
        let mut out = MysqlGtidSet::new();
        for (key, intervals) in &self.sources {
            let remove = other
                .sources
                .get(key)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut kept = Vec::new();
            for &(mut s, e) in intervals {
                for &(rs, re) in remove {
                    if re <= s || rs >= e {
                        continue;
                    }
                    if rs > s {
                        kept.push((s, rs));
                    }
                    s = s.max(re);
                    if s >= e {
                        break;
                    }
                }
                if s < e {
                    kept.push((s, e));
                }
            }
            if !kept.is_empty() {
                out.sources.insert(*key, kept);
            }
        }
        out
    }

    /// The GTIDs in both sets.
    pub fn intersection(&self, other: &MysqlGtidSet) -> MysqlGtidSet {
        self.difference(&self.difference(other))
    }

    /// Whether every GTID of `self` is in `other`.
    pub fn is_subset(&self, other: &MysqlGtidSet) -> bool {
        self.difference(other).is_empty()
    }

    /// The sources with their intervals as inclusive `(first, last)` pairs.
    pub fn intervals(
        &self,
    ) -> impl Iterator<Item = (Uuid, Tag, impl Iterator<Item = (u64, u64)> + '_)> + '_ {
        self.sources
            .iter()
            .map(|(&(uuid, tag), iv)| (uuid, tag, iv.iter().map(|&(s, e)| (s, e - 1))))
    }

    /// The binary encoding (tagged format only when a tag is present, so that servers
    /// before 8.3 understand untagged sets).
    pub fn encode(&self) -> Vec<u8> {
        let tagged = self.sources.keys().any(|(_, tag)| !tag.is_none());
        let n = self.sources.len() as u64;
        let header = if tagged { (1 << 56) | (n << 8) | 1 } else { n };
        let mut out = Vec::with_capacity(8 + self.sources.len() * 24);
        out.extend_from_slice(&header.to_le_bytes());
        for ((uuid, tag), intervals) in &self.sources {
            out.extend_from_slice(&uuid.0);
            if tagged {
                out.push((tag.as_str().len() as u8) << 1);
                out.extend_from_slice(tag.as_str().as_bytes());
            }
            out.extend_from_slice(&(intervals.len() as u64).to_le_bytes());
            for &(s, e) in intervals {
                out.extend_from_slice(&s.to_le_bytes());
                out.extend_from_slice(&e.to_le_bytes());
            }
        }
        out
    }

    /// Decodes the binary encoding, as found in a PREVIOUS_GTIDS event body.
    pub fn decode(bytes: &[u8]) -> Result<MysqlGtidSet, ErrorKind> {
        let mut input = Cursor(bytes);
        let header = input.u64("GTID set header")?;
        let (tagged, n_sids) = match header >> 56 {
            0 => (false, header),
            1 => (true, (header >> 8) & 0x0000_ffff_ffff_ffff),
            _ => return Err(ErrorKind::Invalid("GTID set encoding format")),
        };
        // Each source takes at least 24 bytes: refuse counts the input cannot hold
        // before looping on them.
        if n_sids > (input.0.len() / 24) as u64 {
            return Err(ErrorKind::LengthMismatch {
                field: "GTID source count",
                value: n_sids,
                available: input.0.len(),
            });
        }
        let mut set = MysqlGtidSet::new();
        for _ in 0..n_sids {
            let mut uuid = [0u8; 16];
            uuid.copy_from_slice(input.take(16, "source UUID")?);
            let tag = if tagged {
                let len = usize::from(input.take(1, "tag length")?[0]);
                if len & 1 != 0 || len >> 1 > MAX_TAG_LEN {
                    return Err(ErrorKind::Invalid("GTID tag length"));
                }
                let text = input.take(len >> 1, "tag")?;
                let text = std::str::from_utf8(text).map_err(|_| ErrorKind::Invalid("GTID tag"))?;
                Tag::new(text).map_err(|_| ErrorKind::Invalid("GTID tag"))?
            } else {
                Tag::NONE
            };
            let n_intervals = input.u64("interval count")?;
            if n_intervals > (input.0.len() / 16) as u64 {
                return Err(ErrorKind::LengthMismatch {
                    field: "GTID interval count",
                    value: n_intervals,
                    available: input.0.len(),
                });
            }
            let mut intervals = Vec::with_capacity(n_intervals as usize);
            for _ in 0..n_intervals {
                let (start, end) = (input.u64("interval start")?, input.u64("interval end")?);
                if start == 0 || start >= end || end > GNO_END {
                    return Err(ErrorKind::Invalid("GTID interval"));
                }
                intervals.push((start, end));
            }
            set.absorb(Uuid(uuid), tag, intervals);
        }
        if !input.0.is_empty() {
            return Err(ErrorKind::Invalid(
                "GTID set encoding (bytes after the last source)",
            ));
        }
        Ok(set)
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ErrorKind> {
        if n > self.0.len() {
            return Err(ErrorKind::LengthMismatch {
                field,
                value: n as u64,
                available: self.0.len(),
            });
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, ErrorKind> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_le_bytes(a))
    }
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut previous: Option<Uuid> = None;
        for (&(uuid, tag), intervals) in &self.sources {
            if previous != Some(uuid) {
                if previous.is_some() {
                    f.write_str(",")?;
                }
                write!(f, "{uuid}")?;
                previous = Some(uuid);
            }
            if !tag.is_none() {
                write!(f, ":{tag}")?;
            }
            for &(s, e) in intervals {
                if e - s == 1 {
                    write!(f, ":{s}")?;
                } else {
                    write!(f, ":{s}-{}", e - 1)?;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MysqlGtidSet({self})")
    }
}

impl FromStr for MysqlGtidSet {
    type Err = ParseGtidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseGtidError {
            text: text.to_owned(),
            reason,
        };
        let mut set = MysqlGtidSet::new();
        for source in text.split(',') {
            let source = source.trim();
            if source.is_empty() {
                continue;
            }
            let mut parts = source.split(':');
            let uuid: Uuid = parts.next().unwrap_or_default().trim().parse()?;
            let mut tag = Tag::NONE;
            let mut any_interval = false;
            for part in parts {
                let part = part.trim();
                let first = part.bytes().next().ok_or_else(|| fail("empty interval"))?;
                if !first.is_ascii_digit() {
                    tag = Tag::new(part)?;
                    continue;
                }
                let (start, last) = match part.split_once('-') {
                    Some((a, b)) => (a.parse::<u64>(), b.parse::<u64>()),
                    None => (part.parse::<u64>(), part.parse::<u64>()),
                };
                let (Ok(start), Ok(last)) = (start, last) else {
                    return Err(fail("interval is not a number or range"));
                };
                if start == 0 || last < start || last >= GNO_END {
                    return Err(fail("interval must run from 1 up, first <= last < 2^63-1"));
                }
                set.insert_interval(uuid, tag, start, last + 1);
                any_interval = true;
            }
            if !any_interval {
                return Err(fail("a source needs at least one interval"));
            }
        }
        Ok(set)
    }
}

impl serde::Serialize for MysqlGtidSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MysqlGtidSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn set(text: &str) -> MysqlGtidSet {
        text.parse().expect("valid set")
    }

    #[test]
    fn canonical_text_merges_and_sorts() {
        let s = set(&format!("{B}:3, {A}:7:1-5:6 ,\n{A}:Tag1:2:1"));
        assert_eq!(s.to_string(), format!("{A}:1-7:tag1:1-2,{B}:3"));
        assert_eq!(s.len(), 10);
        assert_eq!(set("").to_string(), "");
        assert!(set("").is_empty());
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            A.to_string(),
            format!("{A}:0"),
            format!("{A}:5-3"),
            format!("{A}:x-1"),
            format!("{A}::1"),
            "nope:1".to_owned(),
        ] {
            assert!(bad.parse::<MysqlGtidSet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn algebra_on_examples() {
        let x = set(&format!("{A}:1-10:20-30,{B}:1-5"));
        let y = set(&format!("{A}:5-25,{B}:6"));
        assert_eq!(x.union(&y).to_string(), format!("{A}:1-30,{B}:1-6"));
        assert_eq!(x.intersection(&y).to_string(), format!("{A}:5-10:20-25"));
        assert_eq!(
            x.difference(&y).to_string(),
            format!("{A}:1-4:26-30,{B}:1-5")
        );
        assert!(set(&format!("{A}:3-4")).is_subset(&x));
        assert!(!y.is_subset(&x));
        let gtid: MysqlGtid = format!("{A}:15").parse().expect("gtid");
        assert!(!x.contains(&gtid) && y.contains(&gtid));
    }

    #[test]
    fn binary_round_trip_untagged_and_tagged() {
        let untagged = set(&format!("{A}:1-10:20,{B}:7"));
        let bytes = untagged.encode();
        assert_eq!(bytes[..8], 2u64.to_le_bytes());
        assert_eq!(bytes.len(), 8 + 2 * 24 + 3 * 16);
        assert_eq!(MysqlGtidSet::decode(&bytes), Ok(untagged));

        let tagged = set(&format!("{A}:1-3:blue:5"));
        let bytes = tagged.encode();
        assert_eq!(bytes[..8], ((1u64 << 56) | (2 << 8) | 1).to_le_bytes());
        assert_eq!(MysqlGtidSet::decode(&bytes), Ok(tagged));
    }

    #[test]
    fn a_million_intervals_in_reverse_order_decode_at_once_and_merge() {
        // Inserted one by one into the front of a vector, these took minutes: what one
        // dump request of 16 MiB could hold.
        let count: u64 = 1_000_000;
        let mut bytes = Vec::with_capacity(8 + 24 + 16 * count as usize);
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&[7; 16]);
        bytes.extend_from_slice(&count.to_le_bytes());
        for i in (0..count).rev() {
            // Every other GNO: none touch.
            bytes.extend_from_slice(&(2 * i + 1).to_le_bytes());
            bytes.extend_from_slice(&(2 * i + 2).to_le_bytes());
        }
        let (done, decoded) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(MysqlGtidSet::decode(&bytes)));
        let set = decoded
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the decode did not end")
            .expect("decodes");
        assert_eq!(set.len(), count);
        assert!(set.contains(&MysqlGtid {
            uuid: Uuid([7; 16]),
            tag: Tag::NONE,
            gno: 1
        }));
        assert!(!set.contains(&MysqlGtid {
            uuid: Uuid([7; 16]),
            tag: Tag::NONE,
            gno: 2
        }));
        // Overlapping and touching ones merge, as one by one.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&[7; 16]);
        bytes.extend_from_slice(&3u64.to_le_bytes());
        for (start, end) in [(10u64, 20u64), (1, 10), (15, 30)] {
            bytes.extend_from_slice(&start.to_le_bytes());
            bytes.extend_from_slice(&end.to_le_bytes());
        }
        let set = MysqlGtidSet::decode(&bytes).expect("decodes");
        assert_eq!(set.to_string(), "07070707-0707-0707-0707-070707070707:1-29");
    }

    #[test]
    fn decode_refuses_counts_the_bytes_cannot_hold() {
        let mut bytes = set(&format!("{A}:1")).encode();
        bytes[..8].copy_from_slice(&u64::MAX.wrapping_shr(8).to_le_bytes());
        assert!(matches!(
            MysqlGtidSet::decode(&bytes),
            Err(ErrorKind::LengthMismatch { .. })
        ));
        let mut bytes = set(&format!("{A}:1")).encode();
        bytes[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(
            MysqlGtidSet::decode(&bytes),
            Err(ErrorKind::LengthMismatch { .. })
        ));
        assert!(MysqlGtidSet::decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn serde_uses_the_text_form() {
        let s = set(&format!("{A}:1-3"));
        let json = serde_json::to_string(&s).expect("serialize");
        assert_eq!(json, format!("\"{A}:1-3\""));
        assert_eq!(
            serde_json::from_str::<MysqlGtidSet>(&json).expect("deserialize"),
            s
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        fn uuid(i: u8) -> Uuid {
            Uuid([i; 16])
        }

        fn arb_set() -> impl Strategy<Value = MysqlGtidSet> {
            proptest::collection::vec((0u8..3, 0u8..2, 1u64..60, 1u64..8), 0..12).prop_map(
                |items| {
                    let mut s = MysqlGtidSet::new();
                    for (u, t, start, len) in items {
                        let tag = if t == 0 {
                            Tag::NONE
                        } else {
                            Tag::new("t").expect("tag")
                        };
                        s.insert_interval(uuid(u), tag, start, start + len);
                    }
                    s
                },
            )
        }

        fn members(s: &MysqlGtidSet) -> std::collections::BTreeSet<(Uuid, Tag, u64)> {
            s.sources
                .iter()
                .flat_map(|(&(u, t), iv)| {
                    iv.iter()
                        .flat_map(move |&(a, b)| (a..b).map(move |g| (u, t, g)))
                })
                .collect()
        }

        proptest! {
            #[test]
            fn operations_match_plain_sets(x in arb_set(), y in arb_set()) {
                let (mx, my) = (members(&x), members(&y));
                prop_assert_eq!(members(&x.union(&y)), &mx | &my);
                prop_assert_eq!(members(&x.intersection(&y)), &mx & &my);
                prop_assert_eq!(members(&x.difference(&y)), &mx - &my);
                prop_assert_eq!(x.is_subset(&y), mx.is_subset(&my));
                prop_assert_eq!(x.len(), mx.len() as u64);
            }

            #[test]
            fn intervals_stay_canonical(x in arb_set(), y in arb_set()) {
                for s in [x.union(&y), x.difference(&y), x.intersection(&y)] {
                    for iv in s.sources.values() {
                        prop_assert!(!iv.is_empty());
                        for w in iv.windows(2) {
                            prop_assert!(w[0].1 < w[1].0, "sorted, apart: {:?}", iv);
                        }
                    }
                }
            }

            #[test]
            fn text_and_binary_round_trip(x in arb_set()) {
                prop_assert_eq!(&x.to_string().parse::<MysqlGtidSet>().expect("parse"), &x);
                prop_assert_eq!(&MysqlGtidSet::decode(&x.encode()).expect("decode"), &x);
            }

            #[test]
            fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = MysqlGtidSet::decode(&bytes);
            }
        }
    }
}
