//! One archive entry after another, as every archive reader here judges them: the name
//! first (blocked, deceptive, encrypted), then the content, read against the message's
//! budget, sniffed against the name and opened one level deeper when it is an archive.

use super::{
    left_unopened, name_claims_archive, names_claim_archive, open_nested, read_entry, shown_name,
    AttachmentPolicy, Budget, Findings, Place, Symbol, Unread, READ_CHUNK,
};
use crate::classify::attachments::{check_shortcut, magic};
use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

/// An entry whose name was judged and whose content is to be read.
pub(super) struct Judged {
    pub(super) name: String,
    pub(super) shown: String,
    pub(super) ext: Option<String>,
}

/// What judging a zip's entries one by one shares: where the zip sits, the compressed
/// bytes its reader consumed, and the read buffer.
pub(super) struct EntryWalker<'a> {
    policy: &'a AttachmentPolicy,
    place: Place<'a>,
    consumed: Rc<Cell<u64>>,
    buf: Vec<u8>,
}

impl<'a> EntryWalker<'a> {
    pub(super) fn new(
        policy: &'a AttachmentPolicy,
        place: Place<'a>,
        consumed: Rc<Cell<u64>>,
    ) -> Self {
        EntryWalker {
            policy,
            place,
            consumed,
            buf: vec![0u8; READ_CHUNK],
        }
    }

    /// Judges an entry's name; `None` when its content is not to be read (a directory, or
    /// encrypted: flagged, since its content cannot be judged).
    pub(super) fn judge_name(
        &self,
        name: String,
        encrypted: bool,
        is_dir: bool,
        findings: &mut Findings,
    ) -> Option<Judged> {
        if is_dir {
            return None;
        }
        let shown = format!("{}/{}", self.place.shown, shown_name(&name));
        let ext = self.policy.check_name(&name, true, findings, &shown);
        if encrypted {
            findings.add(Symbol::ArchiveEncrypted, &shown);
            // A password-protected zip holding `docs.zip` holding `invoice.exe` (the
            // password in the body) scored 2 points, where a nested archive read no other
            // way is uninspected (review).
            self.left_unread(&name, Unread::Unreadable, findings);
            return None;
        }
        Some(Judged { name, shown, ext })
    }

    /// An entry whose content is not read (`why`): an archive its name says it is goes
    /// unjudged.
    pub(super) fn left_unread(&self, name: &str, why: Unread, findings: &mut Findings) {
        if name_claims_archive(name) {
            let shown = format!("{}/{}", self.place.shown, shown_name(name));
            left_unopened(name, &shown, why, findings);
        }
    }

    /// Reads an entry's content from `file` against the budget: sniffed against its name,
    /// and opened one level deeper when it is an archive.
    pub(super) fn judge_content(
        &mut self,
        file: &mut impl Read,
        judged: Judged,
        budget: &mut Budget,
        findings: &mut Findings,
    ) {
        let depth = self.place.depth;
        let keep = depth < self.policy.max_depth;
        let before = self.consumed.get();
        let start = budget.start_read();
        let entry = read_entry(file, &mut self.buf, keep, budget);
        budget.end_read(start, self.consumed.get().saturating_sub(before));
        let Judged { name, shown, ext } = judged;
        if entry.broken {
            findings.add(Symbol::ArchiveUnreadable, &shown);
            // The rest of an archive that broke off (or never began) is not judged.
            self.left_unread(&name, Unread::Unreadable, findings);
        }
        let content = magic::sniff(&entry.head);
        if magic::contradicts(content, magic::promise(ext.as_deref(), "")) {
            findings.add(Symbol::ArchiveTypeMismatch, &shown);
        }
        check_shortcut(&[ext], "", &entry.head, true, findings, &shown);
        if let Some(whole) = entry.whole.as_deref() {
            self.policy
                .check_office_entry(&name, whole, budget, findings, &shown);
        }
        let names = [name];
        let place = Place {
            depth,
            shown: &shown,
            names: &names,
        };
        let named_archive = names_claim_archive(&names);
        let whole = entry.whole.as_deref();
        // An archive inside is decoded by its own codec, not at the outer one's cost
        // (review: a zip inside a PPMd 7-Zip was charged 32 times its bytes).
        let policy = self.policy;
        budget.at_cost(super::cost::PLAIN, |budget| {
            open_nested(
                policy,
                content,
                named_archive,
                whole,
                place,
                budget,
                findings,
            )
        });
    }
}
