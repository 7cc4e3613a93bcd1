//! The bus client's counters, read at every scrape.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use arqon_bus::Bus;

#[derive(Debug)]
pub(crate) struct BusCollector(pub(crate) Bus);

impl Collector for BusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = Arc::clone(&self.0.stats());
        let counters = [
            (
                "arqonbus_bus_slow_consumer_drops",
                "Messages dropped because a subscription of this process was too slow",
                stats.slow_consumer_drops(),
            ),
            (
                "arqonbus_bus_publish_errors",
                "Publishes the bus refused (for example while disconnected)",
                stats.publish_errors(),
            ),
            (
                "arqonbus_bus_disconnects",
                "Times the connection to the bus was lost",
                stats.disconnects(),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let connected = ConstGauge::new(i64::from(self.0.is_connected()));
        let metric = encoder.encode_descriptor(
            "arqonbus_bus_connected",
            "1 while the bus is connected",
            None,
            connected.metric_type(),
        )?;
        connected.encode(metric)
    }
}
