//! Sets of positions in an append-only list, kept in a key-value store so
//! that "the members ranked 41..60, newest first" costs a number of store
//! reads that grows with the page size and only logarithmically with the
//! list, and membership changes are plain atomic increments (no
//! compare-and-swap, so concurrent writers never conflict).
//!
//! Layout under the set's key prefix `P` (positions start at 1):
//! - `P:m:{bucket}`: bitmask of the 32 positions of a bucket
//!   (bucket `b` holds positions `32(b-1)+1 ..= 32b`); a member's bit is set
//!   and cleared by adding `±2^bit`, only after reading that the bit is
//!   clear (set): adding `2^bit` to a set bit, or taking it from a clear one,
//!   would carry into the neighbours' bits. The read and the increment are
//!   not one atomic step; that is safe because a position belongs to one
//!   order, and only the one writer applying that order's index changes
//!   (see `orders::index`) touches its bit, while increments of other bits
//!   never carry into it.
//! - `P:f:{octave}:{index}`: Fenwick-tree nodes counting members per bucket.
//!   Buckets are grouped in octaves (octave `o` holds buckets `2^o ..
//!   2^(o+1)`), each with its own Fenwick tree of fixed size `2^o`, so a tree
//!   never has to grow and an update touches at most `o + 1` nodes. The node
//!   at index `2^o` is the octave's total.
//!
//! Increments commute, so two writers moving different members never
//! conflict; a reader racing a writer can see a count and a bitmask that
//! disagree for a moment, which only shifts a page by a member; the walks
//! below always make progress however the two disagree.

use crate::kv::{Kv, StoreError, read_counter};

const POSITIONS_PER_BUCKET: u64 = 32;
const BUCKET_BITS: u64 = (1 << POSITIONS_PER_BUCKET) - 1;

fn bucket_of(position: u64) -> u64 {
    (position - 1) / POSITIONS_PER_BUCKET + 1
}

fn octave_of(bucket: u64) -> u32 {
    bucket.ilog2()
}

/// One set, named by its key prefix.
pub struct RankSet<'a, K> {
    kv: &'a K,
    prefix: String,
}

/// Per-octave member counts read once per query.
struct OctaveTotals(Vec<u64>);

impl<'a, K: Kv> RankSet<'a, K> {
    pub fn new(kv: &'a K, prefix: String) -> RankSet<'a, K> {
        RankSet { kv, prefix }
    }

    fn mask_key(&self, bucket: u64) -> String {
        format!("{}:m:{bucket}", self.prefix)
    }

    fn node_key(&self, octave: u32, index: u64) -> String {
        format!("{}:f:{octave}:{index}", self.prefix)
    }

    /// Adds `position`; false (and nothing written) when it is a member already.
    pub async fn insert(&self, position: u64) -> Result<bool, StoreError> {
        self.change(position, true).await
    }

    /// Removes `position`; false (and nothing written) when it is not a member.
    pub async fn remove(&self, position: u64) -> Result<bool, StoreError> {
        self.change(position, false).await
    }

    async fn change(&self, position: u64, member: bool) -> Result<bool, StoreError> {
        let mask = read_counter(self.kv, &self.mask_key_of(position)).await?;
        self.change_from(position, member, mask).await
    }

    /// The key of the bitmask holding `position`'s bit.
    pub fn mask_key_of(&self, position: u64) -> String {
        self.mask_key(bucket_of(position))
    }

    /// Adds (`member`) or removes `position`, given `mask`, the value of
    /// [`Self::mask_key_of`] read by the caller (with other reads in one
    /// batch, say) since any change of this position's bit: false, and
    /// nothing written, when the bit already says so.
    pub async fn change_from(&self, position: u64, member: bool, mask: i64) -> Result<bool, StoreError> {
        let bucket = bucket_of(position);
        let bit = (position - 1) % POSITIONS_PER_BUCKET;
        if (mask >> bit & 1 == 1) == member {
            return Ok(false);
        }
        let delta = if member { 1 } else { -1 };
        self.kv.increment(&self.mask_key(bucket), delta << bit).await?;
        let octave = octave_of(bucket);
        let size = 1_u64 << octave;
        let mut index = bucket - size + 1;
        while index <= size {
            self.kv.increment(&self.node_key(octave, index), delta).await?;
            index += index & index.wrapping_neg();
        }
        Ok(true)
    }

    async fn octave_totals(&self, list_len: u64) -> Result<OctaveTotals, StoreError> {
        let mut totals = Vec::new();
        if list_len > 0 {
            for octave in 0..=octave_of(bucket_of(list_len)) {
                let root = read_counter(self.kv, &self.node_key(octave, 1 << octave)).await?;
                totals.push(u64::try_from(root).unwrap_or(0));
            }
        }
        Ok(OctaveTotals(totals))
    }

    /// Number of members, given the length of the list the set is over.
    pub async fn len(&self, list_len: u64) -> Result<u64, StoreError> {
        Ok(self.octave_totals(list_len).await?.0.iter().sum())
    }

    /// The bucket holding the `k`-th smallest member (1-based), with the
    /// number of members in lower buckets.
    async fn locate(&self, totals: &OctaveTotals, k: u64) -> Result<Option<(u64, u64)>, StoreError> {
        let mut before = 0;
        for (octave, &count) in totals.0.iter().enumerate() {
            let octave = octave as u32;
            if before + count < k {
                before += count;
                continue;
            }
            // Fenwick descent: largest prefix of the octave's buckets with
            // fewer than `remaining` members.
            let mut skipped = 0;
            let mut remaining = k - before;
            let mut step = (1_u64 << octave) >> 1;
            while step > 0 {
                let node = read_counter(self.kv, &self.node_key(octave, skipped + step)).await?;
                let node = u64::try_from(node).unwrap_or(0);
                if node < remaining {
                    skipped += step;
                    remaining -= node;
                }
                step >>= 1;
            }
            return Ok(Some(((1 << octave) + skipped, k - remaining)));
        }
        Ok(None)
    }

    /// Member positions of a bucket, ascending.
    async fn bucket_members(&self, bucket: u64) -> Result<Vec<u64>, StoreError> {
        let mask = read_counter(self.kv, &self.mask_key(bucket)).await? as u64 & BUCKET_BITS;
        let first = (bucket - 1) * POSITIONS_PER_BUCKET + 1;
        Ok((0..POSITIONS_PER_BUCKET).filter(|bit| mask >> bit & 1 == 1).map(|bit| first + bit).collect())
    }

    /// Members ranked `skip+1 ..= skip+take` from the highest position down.
    pub async fn newest_first(&self, list_len: u64, skip: u64, take: usize) -> Result<Vec<u64>, StoreError> {
        let totals = self.octave_totals(list_len).await?;
        let total: u64 = totals.0.iter().sum();
        let mut page = Vec::with_capacity(take);
        let mut rank = skip + 1;
        while page.len() < take && rank <= total {
            let k = total - rank + 1;
            let Some((bucket, before)) = self.locate(&totals, k).await? else { break };
            let members = self.bucket_members(bucket).await?;
            let up_to_k = usize::try_from(k - before).unwrap_or(usize::MAX);
            page.extend(members.iter().copied().take(up_to_k).rev().take(take - page.len()));
            rank = total - before + 1;
        }
        Ok(page)
    }

    /// Members ranked `skip+1 ..= skip+take` from the lowest position up.
    pub async fn oldest_first(&self, list_len: u64, skip: u64, take: usize) -> Result<Vec<u64>, StoreError> {
        let totals = self.octave_totals(list_len).await?;
        let total: u64 = totals.0.iter().sum();
        let mut page = Vec::with_capacity(take);
        let mut k = skip + 1;
        while page.len() < take && k <= total {
            let Some((bucket, before)) = self.locate(&totals, k).await? else { break };
            let members = self.bucket_members(bucket).await?;
            let from = usize::try_from(k - before - 1).unwrap_or(usize::MAX);
            page.extend(members.iter().copied().skip(from).take(take - page.len()));
            k = (k + 1).max(before + members.len() as u64 + 1);
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Random;
    use crate::testing::{MemoryKv, SeededRandom};
    use futures::executor::block_on;
    use std::collections::BTreeSet;

    #[test]
    fn pages_match_a_sorted_model_after_random_changes() {
        block_on(async {
            let kv = MemoryKv::new();
            let set = RankSet::new(&kv, "t".to_string());
            let random = SeededRandom::new(7);
            let mut model = BTreeSet::new();
            let list_len = 700;
            for _ in 0..1500 {
                let position = random.next_u64() % list_len + 1;
                if model.insert(position) {
                    set.insert(position).await.unwrap();
                } else {
                    model.remove(&position);
                    set.remove(position).await.unwrap();
                }
            }
            let ascending: Vec<u64> = model.iter().copied().collect();
            let descending: Vec<u64> = ascending.iter().rev().copied().collect();
            assert_eq!(set.len(list_len).await.unwrap(), ascending.len() as u64);
            for (skip, take) in [(0, 10), (5, 40), (100, 100), (ascending.len() as u64 - 3, 10), (9999, 5)] {
                let expected_up: Vec<u64> = ascending.iter().skip(skip as usize).take(take).copied().collect();
                let expected_down: Vec<u64> = descending.iter().skip(skip as usize).take(take).copied().collect();
                assert_eq!(set.oldest_first(list_len, skip, take).await.unwrap(), expected_up);
                assert_eq!(set.newest_first(list_len, skip, take).await.unwrap(), expected_down);
            }
        });
    }

    #[test]
    fn removing_an_absent_member_or_adding_one_twice_leaves_the_neighbours() {
        block_on(async {
            let kv = MemoryKv::new();
            let set = RankSet::new(&kv, "t".to_string());
            let list_len = 64;
            // 34..=36 share a bucket with 33 and 37.
            for position in [33, 35, 37] {
                assert!(set.insert(position).await.unwrap());
            }
            assert!(!set.remove(34).await.unwrap(), "34 was never added");
            assert!(!set.remove(36).await.unwrap(), "36 was never added");
            assert!(!set.insert(35).await.unwrap(), "35 is a member already");
            assert_eq!(set.oldest_first(list_len, 0, 10).await.unwrap(), vec![33, 35, 37]);
            assert_eq!(set.len(list_len).await.unwrap(), 3);
            assert!(set.remove(35).await.unwrap());
            assert!(!set.remove(35).await.unwrap(), "35 is gone already");
            assert_eq!(set.newest_first(list_len, 0, 10).await.unwrap(), vec![37, 33]);
            assert_eq!(set.len(list_len).await.unwrap(), 2);
        });
    }

    #[test]
    fn a_page_costs_reads_logarithmic_in_the_list() {
        block_on(async {
            let kv = MemoryKv::new();
            let set = RankSet::new(&kv, "t".to_string());
            let list_len = 100_000;
            // Every 7th position is a member: sparse enough to span many buckets.
            for position in (7..=list_len).step_by(7) {
                set.insert(position).await.unwrap();
            }
            kv.reset_op_count();
            let page = set.newest_first(list_len, 5000, 20).await.unwrap();
            assert_eq!(page.len(), 20);
            assert_eq!(page[0], (list_len / 7 - 5000) * 7);
            assert!(kv.op_count() < 150, "{} reads for one page", kv.op_count());
        });
    }
}
