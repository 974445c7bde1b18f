//! Staging a plan: each range of an archived file becomes one relay log in the target
//! server's relay-log folder, once it is known the target can apply that file.

use crate::apply::ServerFacts;
use crate::error::RestoreError;
use crate::relay::{RelayLogSet, read_master_fde, relay_log_head};
use binlogd_parser::{Flavour, FormatDescription, Frame, Framer};
use binlogd_storage::Archive;
use binlogd_storage::plan::Plan;

/// Writes the plan's ranges as relay logs `BASENAME.000001`, ... where `target` keeps
/// them, and their index; `on_file` hears of each relay log written with its size. The
/// relay logs name the target's server id as their writer. Each archived file must be one
/// the target can apply (see [`check_target_can_apply`]). On any failure the relay logs
/// written so far are removed again: the server's folder is left as it was.
pub async fn stage_plan(
    archive: &Archive,
    plan: &Plan,
    target: &ServerFacts,
    mut on_file: impl FnMut(&str, u64),
) -> Result<RelayLogSet, RestoreError> {
    let mut relay_logs = RelayLogSet::new(&target.relay_logs);
    match stage_into(&mut relay_logs, archive, plan, target, &mut on_file).await {
        Ok(()) => Ok(relay_logs),
        Err(err) => {
            relay_logs.discard();
            Err(err)
        }
    }
}

async fn stage_into(
    relay_logs: &mut RelayLogSet,
    archive: &Archive,
    plan: &Plan,
    target: &ServerFacts,
    on_file: &mut impl FnMut(&str, u64),
) -> Result<(), RestoreError> {
    for piece in &plan.pieces {
        let bad = |offset: u64, message: String| RestoreError::BadArchive {
            file: format!("{}/{}", piece.epoch, piece.file),
            offset,
            message,
        };
        let bytes = archive
            .read_file(&piece.epoch, &piece.file)
            .await
            .map_err(|e| bad(0, e.to_string()))?;
        if bytes.len() < 4 + 19 {
            return Err(bad(4, "too short to hold a format description".into()));
        }
        let fde_len = u32::from_le_bytes([bytes[13], bytes[14], bytes[15], bytes[16]]) as usize;
        let fde_end = 4usize.saturating_add(fde_len);
        let (from, end) = replay_range(piece.start, piece.end, fde_end, bytes.len())
            .map_err(|(offset, message)| bad(offset, message))?;
        let (_, written_by) = read_master_fde(&bytes[4..fde_end], &piece.file)?;
        check_target_can_apply(&written_by, &target.version).map_err(|message| {
            RestoreError::Unfit(format!(
                "cannot apply {}/{}: {message}",
                piece.epoch, piece.file
            ))
        })?;
        let head = relay_log_head(
            &bytes[4..fde_end],
            &piece.file,
            piece.start,
            target.server_id,
        )?;
        check_events(&bytes, fde_end, from, end)
            .map_err(|(offset, message)| bad(offset, message))?;
        let name = relay_logs.add(&head, &bytes[from..end])?;
        on_file(&name, (head.len() + end - from) as u64);
    }
    relay_logs.write_index()?;
    Ok(())
}

/// The bytes of an archived file (`len` of them, its format description ending at
/// `fde_end`) that replay the plan's range `start..end`: from the range's start (never
/// inside the head, which the relay log carries itself) to its end. A range the file
/// cannot hold, one that ends before the file's events begin (an index or catalogue that
/// says less than the file holds), is refused with the offset where it goes wrong.
fn replay_range(
    start: u64,
    end: u64,
    fde_end: usize,
    len: usize,
) -> Result<(usize, usize), (u64, String)> {
    let end_at = usize::try_from(end).unwrap_or(usize::MAX);
    if fde_end > len || end_at > len {
        return Err((
            len as u64,
            format!("the plan reads to offset {end}, but {len} bytes are archived"),
        ));
    }
    let from = usize::try_from(start).unwrap_or(usize::MAX).max(fde_end);
    if from > end_at {
        return Err((
            end,
            format!(
                "the plan's range {start}..{end} ends before the file's events begin at {from}"
            ),
        ));
    }
    Ok((from, end_at))
}

/// Frames every event of `bytes[from..end]` under the file's format description (at 4,
/// ending at `fde_end`), checking each one's CRC32: a damaged archive is refused with the
/// offset of the bad event before the server sees any of it, and the range must end on an
/// event boundary (where the index says a transaction ends).
fn check_events(
    bytes: &[u8],
    fde_end: usize,
    from: usize,
    end: usize,
) -> Result<(), (u64, String)> {
    let mut framer = Framer::new();
    framer
        .next_event(&bytes[4..fde_end], 4)
        .map_err(|e| (4, e.to_string()))?;
    let mut at = from;
    while at < end {
        match framer.next_event(&bytes[at..end], at as u64) {
            Ok(Frame::Event(event)) => at += event.bytes.len(),
            Ok(Frame::Incomplete { .. }) => {
                return Err((
                    at as u64,
                    format!(
                        "the range to replay ends at {end}, inside this event: the index and the file disagree"
                    ),
                ));
            }
            // The offset goes in front of the message: say the event type and what is wrong.
            Err(e) => {
                let what = match e.event_type {
                    Some(event_type) => format!("{event_type} event: {}", e.kind),
                    None => e.kind.to_string(),
                };
                return Err((e.offset, what));
            }
        }
    }
    Ok(())
}

/// Whether a server running `target_version` (`@@version`) can apply binlogs written by
/// the server `source` describes. A server replicates from its own flavour, of its own
/// major.minor version or an older one: MariaDB cannot read MySQL's events (nor MySQL
/// MariaDB's), and an older server does not know what a newer one may write.
pub fn check_target_can_apply(
    source: &FormatDescription,
    target_version: &str,
) -> Result<(), String> {
    let target_flavour = if target_version.contains("MariaDB") {
        Flavour::MariaDb
    } else {
        Flavour::MySql
    };
    let name = |flavour: Flavour| match flavour {
        Flavour::MariaDb => "MariaDB",
        Flavour::MySql => "MySQL",
    };
    if source.flavour != target_flavour {
        return Err(format!(
            "it was written by {} {}, and the target runs {} {target_version}: a {} server \
             cannot apply {} binlogs",
            name(source.flavour),
            source.server_version,
            name(target_flavour),
            name(target_flavour),
            name(source.flavour)
        ));
    }
    let mut numbers = target_version
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u8>().unwrap_or(0));
    let target = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    let written = (source.version.0, source.version.1);
    if written > target {
        return Err(format!(
            "it was written by {} {}, newer than the target's {target_version}: a server \
             applies binlogs of its own version or older",
            name(source.flavour),
            source.server_version
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use binlogd_parser::ChecksumAlgorithm;

    fn written_by(version: &str) -> FormatDescription {
        let mut format = FormatDescription::stream_preamble(ChecksumAlgorithm::Crc32);
        let mut numbers = version
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse().unwrap_or(0));
        format.server_version = version.to_owned();
        format.version = (
            numbers.next().unwrap_or(0),
            numbers.next().unwrap_or(0),
            numbers.next().unwrap_or(0),
        );
        format.flavour = if version.contains("MariaDB") {
            Flavour::MariaDb
        } else {
            Flavour::MySql
        };
        format
    }

    #[test]
    fn a_range_is_read_after_the_head_and_within_the_file() {
        assert_eq!(replay_range(4, 900, 124, 1000), Ok((124, 900)));
        assert_eq!(replay_range(300, 900, 124, 1000), Ok((300, 900)));
        assert_eq!(replay_range(300, 1000, 124, 1000), Ok((300, 1000)));
        let short = replay_range(4, 1200, 124, 1000).expect_err("past the end");
        assert_eq!(short.0, 1000);
        assert!(short.1.contains("1000 bytes are archived"), "{}", short.1);
        let inside_head = replay_range(4, 40, 124, 1000).expect_err("inside the head");
        assert_eq!(inside_head.0, 40);
        assert!(
            inside_head
                .1
                .contains("before the file's events begin at 124")
        );
        assert!(
            replay_range(4, 40, 5000, 1000).is_err(),
            "a head longer than the file"
        );
    }

    #[test]
    fn a_target_applies_its_own_flavour_of_its_version_or_older() {
        let target = "10.11.19-MariaDB-0+deb12u1";
        for fine in [
            "10.11.19-MariaDB-log",
            "10.11.2-MariaDB",
            "10.6.16-MariaDB-log",
        ] {
            assert_eq!(
                check_target_can_apply(&written_by(fine), target),
                Ok(()),
                "{fine}"
            );
        }
        let newer =
            check_target_can_apply(&written_by("11.4.2-MariaDB-log"), target).expect_err("newer");
        assert!(
            newer.contains("newer than the target's 10.11.19"),
            "{newer}"
        );
        let mysql = check_target_can_apply(&written_by("8.0.36"), target).expect_err("MySQL");
        assert!(
            mysql.contains("a MariaDB server cannot apply MySQL binlogs"),
            "{mysql}"
        );
        let into_mysql = check_target_can_apply(&written_by("10.11.19-MariaDB"), "8.4.0")
            .expect_err("into MySQL");
        assert!(
            into_mysql.contains("a MySQL server cannot apply MariaDB"),
            "{into_mysql}"
        );
        assert_eq!(
            check_target_can_apply(&written_by("8.0.36"), "8.4.0"),
            Ok(())
        );
    }
}
