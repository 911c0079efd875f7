//! The keys grouped by label, built once per call, so that each anchor's positives are a
//! short list instead of a label comparison per key.

/// The key indices of every label, in ascending index order.
///
/// Build it once per call with [`KeyClasses::rebuild`] (it keeps its buffers, so a reused
/// value does not allocate in steady state), then look up an anchor's class with
/// [`KeyClasses::members`].
///
/// ```
/// use metric_loss_mining::KeyClasses;
///
/// let mut classes = KeyClasses::default();
/// classes.rebuild(&[7, 3, 7, 7, 3]);
/// assert_eq!(classes.members(7), &[0, 2, 3]);
/// assert_eq!(classes.members(3), &[1, 4]);
/// assert!(classes.members(5).is_empty());
/// ```
#[derive(Debug, Default, Clone)]
pub struct KeyClasses {
    /// Key indices ordered by (label, index).
    order: Vec<usize>,
    /// The distinct labels, ascending.
    labels: Vec<i64>,
    /// Where each distinct label's keys start in `order` (one more entry than `labels`).
    starts: Vec<usize>,
}

impl KeyClasses {
    /// Regroups the keys of `key_labels` (one label per key).
    pub fn rebuild(&mut self, key_labels: &[i64]) {
        self.order.clear();
        self.order.extend(0..key_labels.len());
        // Unstable is fine: (label, index) pairs are distinct.
        self.order.sort_unstable_by_key(|&j| (key_labels[j], j));
        self.labels.clear();
        self.starts.clear();
        for (at, &j) in self.order.iter().enumerate() {
            let label = key_labels[j];
            if self.labels.last() != Some(&label) {
                self.labels.push(label);
                self.starts.push(at);
            }
        }
        self.starts.push(self.order.len());
    }

    /// The keys labelled `label`, in ascending index order (empty for an unknown label).
    pub fn members(&self, label: i64) -> &[usize] {
        &self.order[self.member_range(label)]
    }

    /// Where [`KeyClasses::members`] lies in [`KeyClasses::by_class`] (a lookup to keep
    /// when a label's members are needed many times).
    pub(crate) fn member_range(&self, label: i64) -> std::ops::Range<usize> {
        match self.labels.binary_search(&label) {
            Ok(c) => self.starts[c]..self.starts[c + 1],
            Err(_) => 0..0,
        }
    }

    /// Where each label's keys lie in [`KeyClasses::by_class`], labels ascending.
    pub(crate) fn class_ranges(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        self.starts.windows(2).map(|w| w[0]..w[1])
    }

    /// Every key index, grouped by label.
    pub(crate) fn by_class(&self) -> &[usize] {
        &self.order
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// No keys.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilding_replaces_the_previous_grouping() {
        let mut c = KeyClasses::default();
        c.rebuild(&[i64::MIN, i64::MAX, i64::MIN, 0]);
        assert_eq!(c.members(i64::MIN), &[0, 2]);
        assert_eq!(c.members(i64::MAX), &[1]);
        c.rebuild(&[5, 5]);
        assert_eq!(c.members(5), &[0, 1]);
        assert!(c.members(0).is_empty());
        assert_eq!(c.len(), 2);
        c.rebuild(&[]);
        assert!(c.is_empty() && c.members(5).is_empty());
    }
}
