//! Staging a plan: each range of an archived file becomes one relay log in the target
//! server's relay-log folder.

use crate::error::RestoreError;
use crate::relay::{RelayLogPlace, RelayLogSet, relay_log_head};
use binlogd_storage::Archive;
use binlogd_storage::plan::Plan;

/// Writes the plan's ranges as relay logs `BASENAME.000001`, ... at `place`, and their
/// index; `on_file` hears of each relay log written with its size. The relay logs name
/// `replica_server_id` (the target's) as their writer.
pub async fn stage_plan(
    archive: &Archive,
    plan: &Plan,
    place: &RelayLogPlace,
    replica_server_id: u32,
    mut on_file: impl FnMut(&str, u64),
) -> Result<RelayLogSet, RestoreError> {
    let mut relay_logs = RelayLogSet::new(place);
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
        let fde_end = 4 + fde_len;
        let end = usize::try_from(piece.end).unwrap_or(usize::MAX);
        if fde_end > bytes.len() || end > bytes.len() {
            return Err(bad(
                bytes.len() as u64,
                format!(
                    "the plan reads to offset {}, but {} bytes are archived",
                    piece.end,
                    bytes.len()
                ),
            ));
        }
        let head = relay_log_head(
            &bytes[4..fde_end],
            &piece.file,
            piece.start,
            replica_server_id,
        )?;
        let from = usize::try_from(piece.start)
            .unwrap_or(usize::MAX)
            .max(fde_end);
        let name = relay_logs.add(&head, &bytes[from..end])?;
        on_file(&name, (head.len() + end - from) as u64);
    }
    relay_logs.write_index()?;
    Ok(relay_logs)
}
