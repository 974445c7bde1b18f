//! Relay logs made from archived binlogs, as a replica's IO thread would have written them,
//! so that a server's own replication applier (with parallel workers) can replay them.
//!
//! A binlog file renamed to a relay log is not enough: MariaDB 10.11's parallel applier
//! crashes on it, because nothing names the master's binlog file (see
//! `../shared/notes/mariadb-relay-replay.md`). A genuine relay log starts with:
//!
//! ```text
//! magic
//! FORMAT_DESCRIPTION   the replica's own (server id = the replica's, flag 0x40: relay log)
//! PREVIOUS_GTIDS       MySQL only: the replica's, empty (flags 0x40 and 0x80: ignorable)
//! ROTATE               artificial (flag 0x20, end_log_pos 0), server id = the master's:
//!                      position (u64) then the master's binlog file name
//! FORMAT_DESCRIPTION   the master's, as in its binlog
//! ...                  the master's events from that position, byte for byte
//! ```
//!
//! [`relay_log_head`] builds everything up to the master's events; the caller appends the
//! archived bytes of the range to replay, cut at a transaction boundary, so the applier
//! stops exactly there without `START SLAVE UNTIL`. [`RelayLogSet`] writes the files and
//! the index the server reads. The layouts are MariaDB's and MySQL's `log_event.h`.

use crate::error::RestoreError;
use binlogd_parser::header::EventHeader;
use binlogd_parser::{
    BINLOG_MAGIC, ChecksumAlgorithm, Flavour, FormatDescription, Frame, Framer, HEADER_LEN,
};
use std::io::Write;
use std::path::PathBuf;

const ROTATE_EVENT: u8 = 4;
const PREVIOUS_GTIDS_EVENT: u8 = 35;
const FLAG_IN_USE: u16 = 0x0001;
const FLAG_ARTIFICIAL: u16 = 0x0020;
const FLAG_RELAY_LOG: u16 = 0x0040;
const FLAG_IGNORABLE: u16 = 0x0080;

/// The master file's format description (its first event, whole), read: which server
/// wrote the file and how its events are framed.
pub fn read_master_fde(
    master_fde: &[u8],
    master_file: &str,
) -> Result<(EventHeader, FormatDescription), RestoreError> {
    let bad = |message: String| RestoreError::BadArchive {
        file: master_file.to_owned(),
        offset: 4,
        message,
    };
    let mut framer = Framer::new();
    let header = match framer.next_event(master_fde, 4) {
        Ok(Frame::Event(event)) if event.bytes.len() == master_fde.len() => event.header,
        Ok(_) => return Err(bad("not one whole FORMAT_DESCRIPTION event".into())),
        Err(e) => return Err(bad(e.to_string())),
    };
    let format = framer
        .format()
        .cloned()
        .ok_or_else(|| bad("no FORMAT_DESCRIPTION event".into()))?;
    Ok((header, format))
}

/// The head of a relay log that carries `master_file` from byte `position`: magic, the
/// replica's format description, an artificial ROTATE, and the master's format
/// description. `master_fde` is the master file's first event, whole (header, body,
/// checksum), as the archive holds it at offset 4.
pub fn relay_log_head(
    master_fde: &[u8],
    master_file: &str,
    position: u64,
    replica_server_id: u32,
) -> Result<Vec<u8>, RestoreError> {
    let (header, format) = read_master_fde(master_fde, master_file)?;
    let with_crc = format.checksum == ChecksumAlgorithm::Crc32;
    let master_server_id = header.server_id;

    let mut head = Vec::with_capacity(4 + 2 * master_fde.len() + 64 + master_file.len());
    head.extend_from_slice(&BINLOG_MAGIC);

    // The replica's format description: the master's, with the replica's server id, the
    // relay-log flag, and its own end position.
    let mut replica_fde = master_fde.to_vec();
    set_u32(&mut replica_fde, 5, replica_server_id);
    let end = (4 + replica_fde.len()) as u32;
    set_u32(&mut replica_fde, 13, end);
    let flags = (header.flags & !FLAG_IN_USE) | FLAG_RELAY_LOG;
    replica_fde[17..19].copy_from_slice(&flags.to_le_bytes());
    reseal(&mut replica_fde, with_crc);
    head.extend_from_slice(&replica_fde);

    if format.flavour == Flavour::MySql {
        // MySQL's replica writes one after its format description. A channel opened on
        // fresh relay logs does not read them for it, but one reopened after a restart
        // scans them for GTIDs, and takes a GTID event before any PREVIOUS_GTIDS as a
        // damaged file (`read_gtids_from_binlog`). Empty: what came before is not the point.
        let size = HEADER_LEN + 8 + if with_crc { 4 } else { 0 };
        let mut previous = Vec::with_capacity(size);
        previous.extend_from_slice(&header.timestamp.to_le_bytes());
        previous.push(PREVIOUS_GTIDS_EVENT);
        previous.extend_from_slice(&replica_server_id.to_le_bytes());
        previous.extend_from_slice(&(size as u32).to_le_bytes());
        previous.extend_from_slice(&((head.len() + size) as u32).to_le_bytes());
        previous.extend_from_slice(&(FLAG_RELAY_LOG | FLAG_IGNORABLE).to_le_bytes());
        previous.extend_from_slice(&0u64.to_le_bytes()); // no source ids
        if with_crc {
            previous.extend_from_slice(&[0; 4]);
        }
        reseal(&mut previous, with_crc);
        head.extend_from_slice(&previous);
    }

    // The artificial ROTATE that names the master's file and where its events start.
    let size = HEADER_LEN + 8 + master_file.len() + if with_crc { 4 } else { 0 };
    let mut rotate = Vec::with_capacity(size);
    rotate.extend_from_slice(&0u32.to_le_bytes()); // timestamp
    rotate.push(ROTATE_EVENT);
    rotate.extend_from_slice(&master_server_id.to_le_bytes());
    rotate.extend_from_slice(&(size as u32).to_le_bytes());
    rotate.extend_from_slice(&0u32.to_le_bytes()); // end_log_pos: 0, made up
    rotate.extend_from_slice(&FLAG_ARTIFICIAL.to_le_bytes());
    rotate.extend_from_slice(&position.to_le_bytes());
    rotate.extend_from_slice(master_file.as_bytes());
    if with_crc {
        rotate.extend_from_slice(&[0; 4]);
    }
    reseal(&mut rotate, with_crc);
    head.extend_from_slice(&rotate);

    // The master's own format description, no longer "in use": the file it describes is
    // not being written here.
    let mut master = master_fde.to_vec();
    let master_flags = header.flags & !FLAG_IN_USE;
    master[17..19].copy_from_slice(&master_flags.to_le_bytes());
    if position > u64::from(header.log_pos) {
        // As a master's dump does when it starts past the file's head: end_log_pos 0 keeps
        // the applier from taking the FDE's own end as its position, so the position it
        // reports is the ROTATE's until the first transaction is applied.
        set_u32(&mut master, 13, 0);
    }
    reseal(&mut master, with_crc);
    head.extend_from_slice(&master);
    Ok(head)
}

fn set_u32(event: &mut [u8], at: usize, value: u32) {
    event[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Recomputes an event's trailing CRC32 after its bytes changed.
fn reseal(event: &mut [u8], with_crc: bool) {
    if with_crc && event.len() >= 4 {
        let body = event.len() - 4;
        let crc = crc32fast::hash(&event[..body]);
        event[body..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Relay logs being staged in a server's relay-log directory. Dropped before
/// [`RelayLogSet::keep`] (a staging that failed or was interrupted, a server that refused
/// them), it removes what it wrote: the server's folder is left as it was.
#[derive(Debug)]
pub struct RelayLogSet {
    place: RelayLogPlace,
    files: Vec<String>,
    wrote_index: bool,
    kept: bool,
}

/// Where a server keeps its relay logs, and how its index names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLogPlace {
    /// The folder (the server's `relay_log` setting, or its datadir).
    pub dir: PathBuf,
    /// The base name (`relay-bin` for `relay-bin.000001`).
    pub basename: String,
    /// What the index puts before each file name: the folder when `relay_log` is a full
    /// path, `.` (the datadir) when the server made the name up itself. The server finds
    /// a relay log only under the name it would have listed it by.
    pub listed_from: PathBuf,
    /// The user and group the server runs as, to be given the staged files: set when
    /// binlogd runs as root, which would otherwise leave them root's, and so unreadable
    /// (and the index unwritable) to the server's SQL thread.
    pub owner: Option<(u32, u32)>,
}

impl RelayLogPlace {
    /// Refuses a place made of what the server did not say: relay logs staged in a
    /// relative folder would land wherever binlogd was started (the server would not
    /// find them), and an empty base name makes files called `.000001`.
    pub fn check(&self) -> Result<(), RestoreError> {
        let problem = if !self.dir.is_absolute() {
            Some(format!(
                "a relay log folder that is not a full path ({:?})",
                self.dir
            ))
        } else if self.basename.is_empty() || self.basename.contains('/') {
            Some(format!("a relay log base name of {:?}", self.basename))
        } else {
            None
        };
        match problem {
            None => Ok(()),
            Some(problem) => Err(RestoreError::Unfit(format!(
                "reports {problem} (from @@relay_log_basename and @@datadir): binlogd cannot \
                 tell where to stage the relay logs. Set relay_log to a full path"
            ))),
        }
    }
}

impl RelayLogSet {
    /// Relay logs named `BASENAME.000001`, ... at `place`.
    pub fn new(place: &RelayLogPlace) -> RelayLogSet {
        RelayLogSet {
            place: place.clone(),
            files: Vec::new(),
            wrote_index: false,
            kept: false,
        }
    }

    /// The server has the relay logs now (a channel names them, and removing the channel
    /// removes them): they stay when this set is dropped.
    pub fn keep(&mut self) {
        self.kept = true;
    }

    /// Writes the next relay log: `head`, then `body`; fsynced. Returns its name.
    pub fn add(&mut self, head: &[u8], body: &[u8]) -> Result<String, RestoreError> {
        let name = format!("{}.{:06}", self.place.basename, self.files.len() + 1);
        let path = self.place.dir.join(&name);
        let mut file = std::fs::File::create(&path).map_err(RestoreError::io("creating", &path))?;
        self.hand_over(&file, &path)?;
        file.write_all(head)
            .and_then(|()| file.write_all(body))
            .and_then(|()| file.sync_all())
            .map_err(RestoreError::io("writing", &path))?;
        self.files.push(name.clone());
        Ok(name)
    }

    /// Writes `BASENAME.index`, listing the relay logs as the server does, and fsyncs
    /// the folder.
    pub fn write_index(&mut self) -> Result<PathBuf, RestoreError> {
        let RelayLogPlace {
            dir,
            basename,
            listed_from,
            owner,
        } = &self.place;
        let path = dir.join(format!("{basename}.index"));
        let mut text = String::new();
        for name in &self.files {
            text.push_str(&listed_from.join(name).display().to_string());
            text.push('\n');
        }
        let temporary = dir.join(format!("{basename}.index.tmp"));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            if let Some((user, group)) = owner {
                std::os::unix::fs::fchown(&file, Some(*user), Some(*group))?;
            } else if let Ok(folder) = std::fs::metadata(dir) {
                use std::os::unix::fs::MetadataExt;
                // As for the relay logs: the folder's group may read it.
                let _ = std::os::unix::fs::fchown(&file, None, Some(folder.gid()));
            }
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(RestoreError::io("writing", &path))?;
        self.wrote_index = true;
        Ok(path)
    }

    /// Gives a staged file to the server's user, if binlogd is not that user. Not root,
    /// binlogd gives it to the folder's group at least (when it is a member: the server
    /// shares its folder with its group), since binlogd's files are not for every user.
    fn hand_over(&self, file: &std::fs::File, path: &std::path::Path) -> Result<(), RestoreError> {
        use std::os::unix::fs::MetadataExt;
        match self.place.owner {
            Some((user, group)) => std::os::unix::fs::fchown(file, Some(user), Some(group))
                .map_err(RestoreError::io("handing to the server's user", path)),
            None => {
                if let Ok(folder) = std::fs::metadata(&self.place.dir) {
                    // Refused when binlogd is not in that group: the files stay its own.
                    let _ = std::os::unix::fs::fchown(file, None, Some(folder.gid()));
                }
                Ok(())
            }
        }
    }

    /// Removes the relay logs written so far (a staging that failed half-way leaves
    /// nothing behind).
    pub fn discard(&mut self) {
        let dir = &self.place.dir;
        for name in self.files.drain(..) {
            let _ = std::fs::remove_file(dir.join(name));
        }
        // The index is written last, once every file is: only its temporary can be left.
        let _ = std::fs::remove_file(dir.join(format!("{}.index.tmp", self.place.basename)));
    }

    /// The relay logs written, in order.
    pub fn files(&self) -> &[String] {
        &self.files
    }
}

impl Drop for RelayLogSet {
    fn drop(&mut self) {
        if !self.kept {
            self.discard();
            // The index this set wrote names files that are gone now.
            if self.wrote_index {
                let index = self
                    .place
                    .dir
                    .join(format!("{}.index", self.place.basename));
                let _ = std::fs::remove_file(index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use binlogd_parser::EventReader;

    #[test]
    fn a_relay_log_place_the_server_did_not_name_is_refused() {
        let place = |dir: &str, basename: &str| RelayLogPlace {
            dir: PathBuf::from(dir),
            basename: basename.into(),
            listed_from: PathBuf::from("."),
            owner: None,
        };
        assert!(place("/var/lib/mysql", "db-relay-bin").check().is_ok());
        // What an unanswered @@relay_log_basename used to give: files named `.000001` in
        // whatever folder binlogd was started from.
        for (dir, basename) in [
            ("", ""),
            ("/var/lib/mysql", ""),
            ("relay", "r"),
            ("/x", "a/b"),
        ] {
            let err = place(dir, basename).check().expect_err("refused");
            assert!(
                err.to_string().contains("relay_log to a full path"),
                "{err}"
            );
        }
    }

    /// A MariaDB 10.11 format description with CRC32, as a file's first event.
    fn mariadb_fde() -> Vec<u8> {
        fde_of("10.11.6-MariaDB-log")
    }

    /// A format description of server `version` with CRC32, as a file's first event.
    fn fde_of(version: &str) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&4u16.to_le_bytes());
        let mut version = version.as_bytes().to_vec();
        version.resize(50, 0);
        body.extend_from_slice(&version);
        body.extend_from_slice(&0u32.to_le_bytes());
        body.push(19);
        body.extend_from_slice(&[0u8; 40]); // post-header lengths (not read here)
        body.push(1); // checksum algorithm: CRC32
        let size = HEADER_LEN + body.len() + 4;
        let mut event = Vec::new();
        event.extend_from_slice(&1_763_868_000u32.to_le_bytes());
        event.push(15);
        event.extend_from_slice(&7u32.to_le_bytes());
        event.extend_from_slice(&(size as u32).to_le_bytes());
        event.extend_from_slice(&((4 + size) as u32).to_le_bytes());
        event.extend_from_slice(&0u16.to_le_bytes());
        event.extend_from_slice(&body);
        event.extend_from_slice(&[0; 4]);
        reseal(&mut event, true);
        // The server's open file has the in-use flag set, outside the checksum.
        event[17] |= FLAG_IN_USE as u8;
        event
    }

    #[test]
    fn the_head_reads_as_a_relay_log_naming_the_master_file() {
        let fde = mariadb_fde();
        let head = relay_log_head(&fde, "mariadb-bin.000042", 1234, 99).expect("head");
        let events: Vec<_> = EventReader::new(&head)
            .collect::<Result<Vec<_>, _>>()
            .expect("every CRC checks out");
        assert_eq!(events.len(), 3);
        let (replica, rotate, master) = (&events[0], &events[1], &events[2]);
        assert_eq!(replica.header.server_id, 99);
        assert_eq!(replica.header.flags, FLAG_RELAY_LOG);
        assert_eq!(u64::from(replica.header.log_pos), replica.end_offset());
        assert_eq!(rotate.header.event_type.0, ROTATE_EVENT);
        assert_eq!(rotate.header.server_id, 7);
        assert_eq!(rotate.header.log_pos, 0);
        assert!(rotate.is_artificial());
        assert_eq!(&rotate.body()[..8], &1234u64.to_le_bytes());
        assert_eq!(&rotate.body()[8..], b"mariadb-bin.000042");
        assert_eq!(master.header.server_id, 7);
        assert_eq!(master.header.flags, 0, "no longer in use");
        assert_eq!(master.bytes.len(), fde.len());
        assert_eq!(
            master.header.log_pos, 0,
            "started past the head: no position of its own"
        );
        let from_head = relay_log_head(&fde, "mariadb-bin.000042", 4, 99).expect("head");
        let events: Vec<_> = EventReader::new(&from_head)
            .collect::<Result<Vec<_>, _>>()
            .expect("every CRC checks out");
        assert_eq!(events[2].header.log_pos as usize, 4 + fde.len());

        let err = relay_log_head(&fde[..30], "x", 4, 1).expect_err("cut");
        assert!(err.to_string().contains("FORMAT_DESCRIPTION"), "{err}");
    }

    #[test]
    fn a_mysql_relay_log_says_its_previous_gtids_before_the_masters_events() {
        let fde = fde_of("9.7.4");
        let head = relay_log_head(&fde, "binlog.000007", 4, 99).expect("head");
        let events: Vec<_> = EventReader::new(&head)
            .collect::<Result<Vec<_>, _>>()
            .expect("every CRC checks out");
        let types: Vec<u8> = events.iter().map(|e| e.header.event_type.0).collect();
        assert_eq!(types, [15, PREVIOUS_GTIDS_EVENT, ROTATE_EVENT, 15]);
        let previous = &events[1];
        assert_eq!(previous.header.server_id, 99);
        assert_eq!(previous.header.flags, FLAG_RELAY_LOG | FLAG_IGNORABLE);
        assert_eq!(u64::from(previous.header.log_pos), previous.end_offset());
        assert_eq!(previous.body(), &[0; 8], "no source ids");
        // MariaDB's relay logs have none.
        let head = relay_log_head(&mariadb_fde(), "mariadb-bin.000007", 4, 99).expect("head");
        assert_eq!(EventReader::new(&head).count(), 3);
    }

    #[test]
    fn relay_logs_and_their_index_are_written_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        let mut set = RelayLogSet::new(&RelayLogPlace {
            dir: dir.path().to_owned(),
            basename: "relay-bin".into(),
            listed_from: dir.path().to_owned(),
            owner: None,
        });
        assert_eq!(set.add(b"head", b"body").expect("add"), "relay-bin.000001");
        assert_eq!(set.add(b"h", b"b").expect("add"), "relay-bin.000002");
        let index = std::fs::read_to_string(set.write_index().expect("index")).expect("read");
        assert_eq!(
            index,
            format!(
                "{0}/relay-bin.000001\n{0}/relay-bin.000002\n",
                dir.path().display()
            )
        );
        assert_eq!(
            std::fs::read(dir.path().join("relay-bin.000001")).expect("file"),
            b"headbody"
        );
    }

    #[test]
    fn staged_files_belong_to_the_servers_user() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: giving files away needs root");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("dir");
        let mut set = RelayLogSet::new(&RelayLogPlace {
            dir: dir.path().to_owned(),
            basename: "relay-bin".into(),
            listed_from: ".".into(),
            owner: Some((65534, 65534)),
        });
        let name = set.add(b"head", b"body").expect("add");
        let index = set.write_index().expect("index");
        for path in [dir.path().join(name), index] {
            let meta = std::fs::metadata(&path).expect("stat");
            assert_eq!(
                (meta.uid(), meta.gid()),
                (65534, 65534),
                "{}",
                path.display()
            );
        }
    }
}
