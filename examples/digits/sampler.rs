//! Class-balanced batches, as TF Similarity's `MultiShotMemorySampler` draws them.

use rand::seq::SliceRandom;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use crate::data::{Digits, CLASSES};

/// Examples per class in a batch.
pub(crate) const PER_CLASS: usize = 8;

/// Each class's members in `digits`, by class.
pub(crate) fn members_by_class(digits: &Digits) -> Vec<Vec<u32>> {
    let mut by_class: Vec<Vec<u32>> = vec![Vec::new(); CLASSES];
    for (i, &label) in digits.labels.iter().enumerate() {
        by_class[label as usize].push(i as u32);
    }
    by_class
}

/// The labels of every batch: `PER_CLASS` of class 0, then of class 1, ...
pub(crate) fn batch_labels() -> Vec<u32> {
    (0..CLASSES as u32).flat_map(|c| [c; PER_CLASS]).collect()
}

/// Fills `indices` with a batch: for each class in order, `PER_CLASS` of its members drawn
/// without replacement, as TF Similarity's `MultiShotMemorySampler` does (`random.sample`);
/// a class with fewer members is drawn with replacement, as there (`random.choices`).
pub(crate) fn draw_batch(by_class: &mut [Vec<u32>], rng: &mut ChaCha8Rng, indices: &mut Vec<u32>) {
    indices.clear();
    for members in by_class {
        if members.len() >= PER_CLASS {
            let (chosen, _) = members.partial_shuffle(rng, PER_CLASS);
            indices.extend_from_slice(chosen);
        } else {
            indices.extend((0..PER_CLASS).map(|_| members[rng.random_range(0..members.len())]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn batches_hold_every_class_with_distinct_examples() {
        // Class c has members c*100 .. c*100 + 20 + c.
        let mut by_class: Vec<Vec<u32>> = (0..CLASSES as u32)
            .map(|c| (c * 100..c * 100 + 20 + c).collect())
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut indices = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            draw_batch(&mut by_class, &mut rng, &mut indices);
            assert_eq!(indices.len(), CLASSES * PER_CLASS);
            for (c, chunk) in indices.chunks(PER_CLASS).enumerate() {
                let c = c as u32;
                let distinct: std::collections::HashSet<_> = chunk.iter().collect();
                assert_eq!(distinct.len(), PER_CLASS, "class {c}: {chunk:?}");
                assert!(chunk
                    .iter()
                    .all(|&i| (c * 100..c * 100 + 20 + c).contains(&i)));
            }
            seen.extend(indices.iter().copied());
        }
        // Over 50 batches every member turns up: the draw is not stuck on a subset.
        assert_eq!(seen.len(), (0..CLASSES).map(|c| 20 + c).sum::<usize>());
        // A class smaller than a batch's share is drawn with replacement.
        let mut small = vec![vec![1u32, 2, 3]; CLASSES];
        draw_batch(&mut small, &mut rng, &mut indices);
        assert_eq!(indices.len(), CLASSES * PER_CLASS);
        assert!(indices.iter().all(|i| (1..=3).contains(i)));
    }

    #[test]
    fn members_and_labels_line_up() {
        let digits = Digits {
            pixels: vec![0.0; 3 * crate::data::PIXELS],
            labels: vec![2, 0, 2],
        };
        let by_class = members_by_class(&digits);
        assert_eq!(
            (by_class[0].clone(), by_class[2].clone()),
            (vec![1], vec![0, 2])
        );
        assert_eq!(batch_labels().len(), CLASSES * PER_CLASS);
        assert_eq!(batch_labels()[PER_CLASS], 1);
    }
}
