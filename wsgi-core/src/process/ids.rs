//! The numbers that name the parts of a pool of worker processes, each a type of its own so
//! that one cannot pass for another:
//!
//! - a [`WorkerId`]: one of the pool's workers, whichever process runs it now (a
//!   replacement keeps it); what logs and metrics call `worker`.
//! - a [`GroupId`]: the slots one worker process uses. There is one group per worker and a
//!   spare: a replacement starts in the spare, and the group its predecessor leaves becomes
//!   the spare once that one has exited.
//! - a [`SlotId`]: one slot among all the host's (the relay's sockets, the watchdog's
//!   records).
//! - a [`LocalSlot`]: one slot among its worker process's, as the wire and the started page
//!   name it.
//!
//! How slots make up groups is [`SlotLayout`]'s alone.

use std::fmt;
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicUsize, Ordering};

/// One of the pool's workers: an index into its workers, `0..max_processes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct WorkerId(usize);

impl WorkerId {
    /// The worker at `index` among the pool's.
    pub(crate) const fn new(index: usize) -> Self {
        WorkerId(index)
    }

    /// Its index among the pool's workers, as metrics and logs show it.
    pub(crate) const fn index(self) -> usize {
        self.0
    }

    /// As the wire carries it; an index past `u32::MAX` (no pool is that big) saturates.
    pub(crate) fn to_wire(self) -> u32 {
        u32::try_from(self.0).unwrap_or(u32::MAX)
    }

    /// The worker the wire names.
    pub(crate) fn from_wire(n: u32) -> Self {
        WorkerId(n as usize)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One slot of a worker process, `0..threads`, as both sides name it: on the wire, in the
/// started page, and in the worker's own records of its threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct LocalSlot(u32);

impl LocalSlot {
    /// The slot the wire names `n`.
    pub(crate) const fn new(n: u32) -> Self {
        LocalSlot(n)
    }

    /// As the wire carries it.
    pub(crate) const fn get(self) -> u32 {
        self.0
    }

    /// Its position among the worker's slots: in its sockets, its started page, and (in
    /// the worker) the engine's records of its threads.
    pub(crate) const fn index(self) -> usize {
        self.0 as usize
    }
}

/// The slots one worker process uses: an index into the pool's groups.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct GroupId(usize);

#[cfg(target_os = "linux")]
impl GroupId {
    /// Its position among the pool's groups.
    pub(crate) const fn index(self) -> usize {
        self.0
    }
}

/// One slot among all the host's.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SlotId(usize);

#[cfg(target_os = "linux")]
impl SlotId {
    /// The slot whose record is the engine's `Shared::slots[index]`, as the watchdog names
    /// it: with worker processes the engine keeps one record per host slot, in this order.
    pub(crate) const fn from_shared_index(index: usize) -> Self {
        SlotId(index)
    }

    /// Its position among the host's slots: in the relay's connections, and in the engine's
    /// `Shared::slots`.
    pub(crate) const fn index(self) -> usize {
        self.0
    }
}

/// What one of the relay reactor's tokens stands for.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watched {
    /// A slot's socket.
    Slot(SlotId),
    /// A group's intake socket.
    Intake(GroupId),
}

/// How the host's slots are laid out: a group of `threads` slots for each worker and one
/// spare group, the slots of a group numbered together.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotLayout {
    groups: usize,
    threads: usize,
}

#[cfg(target_os = "linux")]
impl SlotLayout {
    /// The layout for `workers` workers of `threads` threads each, and the spare group.
    pub(crate) const fn new(workers: usize, threads: usize) -> Self {
        SlotLayout {
            groups: workers + 1,
            threads,
        }
    }

    /// Slots in a group: a worker process's threads.
    pub(crate) const fn threads(self) -> usize {
        self.threads
    }

    /// How many groups there are, the spare included.
    pub(crate) const fn group_count(self) -> usize {
        self.groups
    }

    /// How many slots there are, in every group.
    pub(crate) const fn slot_count(self) -> usize {
        self.groups * self.threads
    }

    /// Every group, in order.
    pub(crate) fn groups(self) -> impl Iterator<Item = GroupId> {
        (0..self.groups).map(GroupId)
    }

    /// The group `worker` starts in.
    pub(crate) const fn home(self, worker: WorkerId) -> GroupId {
        GroupId(worker.0)
    }

    /// The group no worker starts in, for the first replacement.
    pub(crate) const fn spare(self) -> GroupId {
        GroupId(self.groups - 1)
    }

    /// The group `slot` belongs to.
    pub(crate) const fn group_of(self, slot: SlotId) -> GroupId {
        GroupId(slot.0 / self.threads)
    }

    /// Which of its group's slots `slot` is. A group of more than `u32::MAX` threads (none
    /// can be started) would name its last ones `u32::MAX`, which the worker ignores.
    pub(crate) fn local_of(self, slot: SlotId) -> LocalSlot {
        LocalSlot::new(u32::try_from(slot.0 % self.threads).unwrap_or(u32::MAX))
    }

    /// The slots of `group`, in the order of their [`LocalSlot`]s.
    pub(crate) fn slots_of(self, group: GroupId) -> impl Iterator<Item = SlotId> {
        let first = group.0 * self.threads;
        (first..first + self.threads).map(SlotId)
    }

    /// The reactor's token for `slot`'s socket.
    pub(crate) const fn slot_token(self, slot: SlotId) -> usize {
        slot.0
    }

    /// The reactor's token for `group`'s intake socket, after every slot's.
    pub(crate) const fn intake_token(self, group: GroupId) -> usize {
        self.slot_count() + group.0
    }

    /// What the reactor's `token` stands for; `None` for a token this layout never gave.
    pub(crate) const fn watched(self, token: usize) -> Option<Watched> {
        if token < self.slot_count() {
            Some(Watched::Slot(SlotId(token)))
        } else if token - self.slot_count() < self.groups {
            Some(Watched::Intake(GroupId(token - self.slot_count())))
        } else {
            None
        }
    }
}

/// A [`WorkerId`] that threads share and change: the worker whose process runs in a group.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(crate) struct SharedWorkerId(AtomicUsize);

#[cfg(target_os = "linux")]
impl SharedWorkerId {
    /// What stands for no worker: no pool has that many.
    const NONE: usize = usize::MAX;

    /// The worker it names now.
    pub(crate) fn load(&self) -> Option<WorkerId> {
        Some(self.0.load(Ordering::Acquire))
            .filter(|&n| n != Self::NONE)
            .map(WorkerId)
    }

    /// Names `worker` from now on.
    pub(crate) fn store(&self, worker: WorkerId) {
        self.0.store(worker.0, Ordering::Release);
    }
}

/// Naming no worker yet.
#[cfg(target_os = "linux")]
impl Default for SharedWorkerId {
    fn default() -> Self {
        SharedWorkerId(AtomicUsize::new(Self::NONE))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn every_slot_belongs_to_one_group_at_its_own_local_index() {
        let layout = SlotLayout::new(2, 3);
        assert_eq!((layout.group_count(), layout.slot_count()), (3, 9));
        let mut seen = Vec::new();
        for group in layout.groups() {
            for (i, slot) in layout.slots_of(group).enumerate() {
                assert_eq!(layout.group_of(slot), group);
                assert_eq!(
                    layout.local_of(slot),
                    LocalSlot::new(u32::try_from(i).unwrap())
                );
                seen.push(slot.index());
            }
        }
        assert_eq!(
            seen,
            (0..9).collect::<Vec<_>>(),
            "slots overlap or leave gaps"
        );
    }

    #[test]
    fn each_worker_has_a_group_of_its_own_and_the_last_is_spare() {
        let layout = SlotLayout::new(2, 4);
        let homes: Vec<_> = (0..2).map(|w| layout.home(WorkerId::new(w))).collect();
        assert_ne!(homes[0], homes[1]);
        assert!(!homes.contains(&layout.spare()));
        assert_eq!(layout.groups().last(), Some(layout.spare()));
    }

    #[test]
    fn slot_sockets_and_intakes_have_tokens_of_their_own() {
        let layout = SlotLayout::new(1, 2);
        for group in layout.groups() {
            let token = layout.intake_token(group);
            assert_eq!(layout.watched(token), Some(Watched::Intake(group)));
            for slot in layout.slots_of(group) {
                let token = layout.slot_token(slot);
                assert_eq!(layout.watched(token), Some(Watched::Slot(slot)));
            }
        }
        let past = layout.intake_token(layout.spare()) + 1;
        assert_eq!(layout.watched(past), None);
    }

    #[test]
    fn the_slot_of_a_watchdog_record_is_the_host_slot_of_that_index() {
        let layout = SlotLayout::new(1, 2);
        let slot = SlotId::from_shared_index(3);
        assert_eq!(slot.index(), 3);
        assert_eq!(layout.group_of(slot), layout.spare());
        assert_eq!(layout.local_of(slot), LocalSlot::new(1));
    }

    #[test]
    fn a_group_names_no_worker_until_one_starts_in_it() {
        let worker = SharedWorkerId::default();
        assert_eq!(worker.load(), None);
        worker.store(WorkerId::new(0));
        assert_eq!(worker.load(), Some(WorkerId::new(0)));
    }

    #[test]
    fn a_worker_crosses_the_wire_as_itself() {
        let worker = WorkerId::new(7);
        assert_eq!(WorkerId::from_wire(worker.to_wire()), worker);
        assert_eq!(worker.to_string(), "7");
    }
}
