//! The UCI optical digits (8x8 images, 10 classes): loading and a per-class split.

use std::io::Read;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Pixels per image (8 x 8).
pub(crate) const PIXELS: usize = 64;
/// Number of classes (digits 0..9).
pub(crate) const CLASSES: usize = 10;

/// Images with their labels: row `i` of `pixels` (64 values, 0..16) has label `labels[i]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Digits {
    /// Row-major `len x 64` pixel counts.
    pub(crate) pixels: Vec<f32>,
    /// One class in 0..10 per image.
    pub(crate) labels: Vec<u32>,
}

impl Digits {
    /// Number of images.
    pub(crate) fn len(&self) -> usize {
        self.labels.len()
    }

    /// Image `i`'s pixels.
    pub(crate) fn image(&self, i: usize) -> &[f32] {
        &self.pixels[i * PIXELS..(i + 1) * PIXELS]
    }

    fn push(&mut self, image: &[f32], label: u32) {
        self.pixels.extend_from_slice(image);
        self.labels.push(label);
    }
}

/// Reads a gzip-compressed CSV of 65 integers a row (64 pixels, then the label).
///
/// # Errors
/// A message naming `path` and what is wrong (missing file, bad gzip, bad row).
pub(crate) fn load(path: &Path) -> Result<Digits, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot open data file {}: {e}", path.display()))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .map_err(|e| {
            format!(
                "cannot read data file {} as gzip-compressed text: {e}",
                path.display()
            )
        })?;
    parse(&text).map_err(|e| format!("malformed data file {}: {e}", path.display()))
}

/// Parses the CSV text (see [`load`]).
///
/// # Errors
/// A message naming the line and the problem.
pub(crate) fn parse(text: &str) -> Result<Digits, String> {
    let mut digits = Digits::default();
    let mut image = Vec::with_capacity(PIXELS);
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() {
            continue;
        }
        image.clear();
        let mut label = None;
        for (column, field) in line.split(',').enumerate() {
            let value: u32 = field.trim().parse().map_err(|_| {
                format!(
                    "line {number}, column {}: {field:?} is not a non-negative integer",
                    column + 1
                )
            })?;
            match column {
                c if c < PIXELS && value <= 16 => image.push(value as f32),
                c if c < PIXELS => {
                    return Err(format!(
                        "line {number}, column {}: pixel {value} is outside 0..=16",
                        c + 1
                    ))
                }
                PIXELS if (value as usize) < CLASSES => label = Some(value),
                PIXELS => return Err(format!("line {number}: label {value} is outside 0..=9")),
                _ => return Err(format!("line {number}: more than {} columns", PIXELS + 1)),
            }
        }
        match label {
            Some(label) => digits.push(&image, label),
            None => {
                return Err(format!(
                    "line {number}: {} columns, expected {} (64 pixels and a label)",
                    line.split(',').count(),
                    PIXELS + 1
                ))
            }
        }
    }
    for class in 0..CLASSES as u32 {
        if digits.labels.iter().filter(|&&l| l == class).count() < 2 {
            return Err(format!(
                "class {class} has fewer than 2 images; every digit needs at least 2"
            ));
        }
    }
    Ok(digits)
}

/// Splits each class separately: a shuffled `train_fraction` of its images (rounded) goes
/// to the training set, the rest to the test set. The same seed gives the same split.
pub(crate) fn split(digits: &Digits, train_fraction: f64, seed: u64) -> (Digits, Digits) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut train, mut test) = (Digits::default(), Digits::default());
    for class in 0..CLASSES as u32 {
        let mut members: Vec<usize> = (0..digits.len())
            .filter(|&i| digits.labels[i] == class)
            .collect();
        members.shuffle(&mut rng);
        let cut = (members.len() as f64 * train_fraction).round() as usize;
        for (rank, &i) in members.iter().enumerate() {
            let target = if rank < cut { &mut train } else { &mut test };
            target.push(digits.image(i), class);
        }
    }
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: u32, fill: u32) -> String {
        let mut fields = vec![fill.to_string(); PIXELS];
        fields.push(label.to_string());
        fields.join(",")
    }

    fn two_per_class() -> String {
        (0..20)
            .map(|i| row(i % 10, i % 17))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn parses_rows() {
        let d = parse(&two_per_class()).unwrap();
        assert_eq!(d.len(), 20);
        assert_eq!(d.labels[13], 3);
        assert!(d.image(13).iter().all(|&p| p == 13.0));
    }

    #[test]
    fn names_the_bad_line() {
        let mut text = two_per_class();
        text.push_str("\n1,2,3");
        let err = parse(&text).unwrap_err();
        assert!(
            err.contains("line 21") && err.contains("expected 65"),
            "{err}"
        );
        let err = parse(&format!("{}\n{}", two_per_class(), row(12, 0))).unwrap_err();
        assert!(err.contains("label 12"), "{err}");
        let err = parse("x").unwrap_err();
        assert!(err.contains("line 1, column 1"), "{err}");
    }

    #[test]
    fn split_is_per_class_and_seeded() {
        let text = (0..100)
            .map(|i| row(i % 10, i % 17))
            .collect::<Vec<_>>()
            .join("\n");
        let d = parse(&text).unwrap();
        let (train, test) = split(&d, 0.7, 1);
        assert_eq!((train.len(), test.len()), (70, 30));
        for class in 0..10 {
            assert_eq!(train.labels.iter().filter(|&&l| l == class).count(), 7);
        }
        assert_eq!(split(&d, 0.7, 1), (train.clone(), test));
        assert_ne!(split(&d, 0.7, 2).0, train);
    }

    #[test]
    fn missing_file_is_named() {
        let err = load(Path::new("no/such/digits.csv.gz")).unwrap_err();
        assert!(err.contains("no/such/digits.csv.gz"), "{err}");
    }
}
