//! A metrics recorder for tests that keeps every value readable at any time (the debugging
//! recorder of `metrics-util` resets what it reports on each snapshot).

#![allow(dead_code)]

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Counters, gauges and histograms by key, in memory.
#[derive(Clone)]
pub struct TestRecorder(Arc<Registry<Key, AtomicStorage>>);

impl Default for TestRecorder {
    fn default() -> Self {
        TestRecorder(Arc::new(Registry::atomic()))
    }
}

fn matches(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    let mut have: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
    let mut want = labels.to_vec();
    have.sort();
    want.sort();
    key.name() == name && have == want
}

impl TestRecorder {
    /// The counter or gauge `name` with exactly `labels`, or a histogram's sample count; 0
    /// when the series was never recorded.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Like [`TestRecorder::value`], `None` when the series was never recorded.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        for (k, c) in self.0.get_counter_handles() {
            if matches(&k, name, labels) {
                return Some(c.load(Ordering::SeqCst) as f64);
            }
        }
        for (k, g) in self.0.get_gauge_handles() {
            if matches(&k, name, labels) {
                return Some(f64::from_bits(g.load(Ordering::SeqCst)));
            }
        }
        for (k, h) in self.0.get_histogram_handles() {
            if matches(&k, name, labels) {
                return Some(h.data().len() as f64);
            }
        }
        None
    }

    /// The samples of histogram `name` (no labels).
    pub fn samples(&self, name: &str) -> Vec<f64> {
        self.0
            .get_histogram_handles()
            .into_iter()
            .filter(|(k, _)| matches(k, name, &[]))
            .flat_map(|(_, h)| h.data())
            .collect()
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}
