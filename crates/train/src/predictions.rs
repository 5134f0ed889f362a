//! Per-image predictions of an evaluation and what follows from them: the confusion matrix,
//! per-class precision / recall / F1 and top-5 accuracy.

use serde::Serialize;

/// The prediction for one image of a split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    /// Position of the image in the split, from 0.
    pub index: usize,
    /// The true class.
    pub label: u32,
    /// The predicted class (the highest logit; the first one on a tie).
    pub predicted: u32,
    /// Softmax probability of the predicted class.
    pub probability: f64,
    /// Whether the true class is among the five highest logits (ties count in its favour
    /// only while fewer than five classes score strictly higher).
    pub in_top5: bool,
}

impl Prediction {
    /// The prediction of one image from its logits.
    pub fn from_logits(index: usize, label: u32, logits: &[f32]) -> Prediction {
        let mut predicted = 0usize;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[predicted] {
                predicted = i;
            }
        }
        let max = logits.get(predicted).copied().unwrap_or(0.0) as f64;
        let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
        let truth = logits
            .get(label as usize)
            .copied()
            .unwrap_or(f32::NEG_INFINITY);
        let higher = logits.iter().filter(|&&v| v > truth).count();
        Prediction {
            index,
            label,
            predicted: predicted as u32,
            probability: if sum > 0.0 { 1.0 / sum } else { 0.0 },
            in_top5: higher < 5,
        }
    }

    /// Whether the prediction is right.
    pub fn correct(&self) -> bool {
        self.label == self.predicted
    }
}

/// Precision, recall and F1 of one class (0 where undefined, as scikit-learn reports them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// The class name.
    pub name: String,
    /// Correct predictions of the class / predictions of the class.
    pub precision: f64,
    /// Correct predictions of the class / images of the class.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Images of the class.
    pub support: u64,
}

/// Every image's prediction on a split, with the class names.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    class_names: Vec<String>,
    rows: Vec<Prediction>,
}

impl Predictions {
    /// The predictions `rows` over the classes `class_names` (labels index into it).
    pub fn new(class_names: Vec<String>, rows: Vec<Prediction>) -> Predictions {
        Predictions { class_names, rows }
    }

    /// The same predictions with other names for the classes (e.g. the spec's
    /// `model.labels`); a list of another length is ignored.
    pub fn renamed(mut self, class_names: Vec<String>) -> Predictions {
        if class_names.len() == self.class_names.len() {
            self.class_names = class_names;
        }
        self
    }

    /// Class names in label order.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// One row per image, in the split's order.
    pub fn rows(&self) -> &[Prediction] {
        &self.rows
    }

    /// Fraction of images classified correctly (0 for no images).
    pub fn accuracy(&self) -> f64 {
        let right = self.rows.iter().filter(|p| p.correct()).count();
        right as f64 / self.rows.len().max(1) as f64
    }

    /// `matrix[true][predicted]`: how many images of each class were predicted as each class
    /// (rows: true class, columns: predicted class, as scikit-learn's `confusion_matrix`).
    pub fn confusion_matrix(&self) -> Vec<Vec<u64>> {
        let n = self.class_names.len();
        let mut m = vec![vec![0u64; n]; n];
        for p in &self.rows {
            if let Some(cell) = m
                .get_mut(p.label as usize)
                .and_then(|r| r.get_mut(p.predicted as usize))
            {
                *cell += 1;
            }
        }
        m
    }

    /// Precision, recall, F1 and support of every class, in label order.
    pub fn per_class(&self) -> Vec<ClassMetrics> {
        let m = self.confusion_matrix();
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        self.class_names
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let hit = m[c][c];
                let support: u64 = m[c].iter().sum();
                let predicted: u64 = m.iter().map(|r| r[c]).sum();
                let (precision, recall) = (ratio(hit, predicted), ratio(hit, support));
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    name: name.clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect()
    }

    /// Top-5 accuracy, only when there are more than five classes (else it is always 1).
    pub fn top5(&self) -> Option<f64> {
        (self.class_names.len() > 5).then(|| {
            let hits = self.rows.iter().filter(|p| p.in_top5).count();
            hits as f64 / self.rows.len().max(1) as f64
        })
    }

    /// The `n` wrong predictions with the highest probability, most confident first.
    pub fn most_confident_mistakes(&self, n: usize) -> Vec<Prediction> {
        let mut wrong: Vec<Prediction> =
            self.rows.iter().filter(|p| !p.correct()).copied().collect();
        wrong.sort_by(|a, b| {
            b.probability
                .total_cmp(&a.probability)
                .then(a.index.cmp(&b.index))
        });
        wrong.truncate(n);
        wrong
    }

    /// The predictions as CSV: `index,true,predicted,probability,true_name,predicted_name`.
    pub fn to_csv(&self) -> String {
        let name = |c: u32| {
            let n = self
                .class_names
                .get(c as usize)
                .map(String::as_str)
                .unwrap_or("");
            if n.contains([',', '"', '\n']) {
                format!("\"{}\"", n.replace('"', "\"\""))
            } else {
                n.to_string()
            }
        };
        let mut s = String::from("index,true,predicted,probability,true_name,predicted_name\n");
        for p in &self.rows {
            s.push_str(&format!(
                "{},{},{},{:.6},{},{}\n",
                p.index,
                p.label,
                p.predicted,
                p.probability,
                name(p.label),
                name(p.predicted)
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn prediction_takes_argmax_softmax_and_top5() {
        let p = Prediction::from_logits(3, 2, &[0.0, 2.0, 1.0, -1.0, 0.5, 0.2, 0.1]);
        assert_eq!(p.predicted, 1);
        let sum: f64 = [0.0f64, 2.0, 1.0, -1.0, 0.5, 0.2, 0.1]
            .iter()
            .map(|v| v.exp())
            .sum();
        // The logits are f32: 0.2f32 is not 0.2.
        assert!((p.probability - 2f64.exp() / sum).abs() < 1e-7);
        assert!(p.in_top5);
        let q = Prediction::from_logits(0, 3, &[0.0, 2.0, 1.0, -1.0, 0.5, 0.2, 0.1]);
        assert!(!q.in_top5, "six classes score higher than class 3");
    }

    #[test]
    fn confusion_matrix_and_per_class_scores_match_scikit_learn() {
        // y_true = [0,0,1,1,2,2], y_pred = [0,1,1,1,0,1]: sklearn gives
        // precision [0.5, 0.5, 0], recall [0.5, 1, 0], f1 [0.5, 0.6667, 0].
        let mk = |i, l, p| Prediction {
            index: i,
            label: l,
            predicted: p,
            probability: 0.5,
            in_top5: true,
        };
        let rows = vec![
            mk(0, 0, 0),
            mk(1, 0, 1),
            mk(2, 1, 1),
            mk(3, 1, 1),
            mk(4, 2, 0),
            mk(5, 2, 1),
        ];
        let p = Predictions::new(names(3), rows);
        assert_eq!(
            p.confusion_matrix(),
            vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 1, 0]]
        );
        let c = p.per_class();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-4;
        assert!(close(c[0].precision, 0.5) && close(c[0].recall, 0.5) && close(c[0].f1, 0.5));
        assert!(close(c[1].precision, 0.5) && close(c[1].recall, 1.0) && close(c[1].f1, 2.0 / 3.0));
        assert_eq!(
            (c[2].precision, c[2].recall, c[2].f1, c[2].support),
            (0.0, 0.0, 0.0, 2)
        );
        assert_eq!(p.top5(), None, "3 classes: no top-5");
        assert!((p.accuracy() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn mistakes_are_sorted_by_confidence_and_csv_has_one_row_per_image() {
        let mk = |i, l, p, prob| Prediction {
            index: i,
            label: l,
            predicted: p,
            probability: prob,
            in_top5: false,
        };
        let rows = vec![
            mk(0, 0, 1, 0.6),
            mk(1, 1, 1, 0.99),
            mk(2, 1, 0, 0.9),
            mk(3, 0, 1, 0.7),
        ];
        let p = Predictions::new(
            vec![
                "a,b".into(),
                "c".into(),
                "d".into(),
                "e".into(),
                "f".into(),
                "g".into(),
            ],
            rows,
        );
        let idx: Vec<usize> = p
            .most_confident_mistakes(2)
            .iter()
            .map(|m| m.index)
            .collect();
        assert_eq!(idx, vec![2, 3]);
        assert_eq!(p.top5(), Some(0.0));
        let csv = p.to_csv();
        assert_eq!(csv.lines().count(), 5);
        assert_eq!(csv.lines().nth(1).unwrap(), "0,0,1,0.600000,\"a,b\",c");
    }
}
