//! The HJ 212 gateway's outages and figures.

use super::*;

impl Service {
    /// Records an outage of the HJ 212 gateway itself. Only the gateway's
    /// own principal (or an admin) may: an outage excuses enterprises'
    /// missing days. Re-sending the same outage is a duplicate.
    pub async fn record_outage(&self, who: &Principal, outage: Outage) -> Result<Receipt> {
        let gateway = matches!(&who.role, Role::Source { source } if source == hj212::SOURCE);
        if !(gateway || who.role == Role::Admin) {
            return Err(Error::PermissionDenied(format!(
                "{} may not record platform outages; only the hj212 gateway does",
                who.name
            )));
        }
        let event = Event::PlatformOutage(outage);
        self.append_event(who, &event).await?.map_err(|c| {
            Error::AlreadyExists(format!("another outage from {} is at seq {}", outage.from, c.existing.seq))
        })
    }
}

impl Service {
    /// Makes the running gateway's counters readable through the door.
    pub fn attach_gateway_stats(&self, stats: Arc<hj212::GatewayStats>) {
        let _ = self.gateway_stats.set(stats);
    }

    /// The gateway's totals and the figures of each device `who` may see
    /// (`mn` empty: all of them). A regulator scoped to a region sees only
    /// the devices of its enterprises' monitoring points, and no totals.
    pub fn gateway_figures(&self, who: &Principal, mn: &str) -> Result<GatewayFigures> {
        let scope = auth::list_scope(who, "")?;
        let stats = self.gateway_stats.get().ok_or_else(|| {
            Error::FailedPrecondition(
                "the hj212 gateway is not running (start it with --hj212-listen)".into(),
            )
        })?;
        let visible = |device: &str| {
            scope.is_empty()
                || self.directory.point(device).is_some_and(|p| {
                    // The directory alone (no I/O): a point's enterprise
                    // was registered before the point.
                    self.directory
                        .enterprise(p.uscc().as_str())
                        .is_some_and(|r| r.enterprise.region_code.starts_with(&scope))
                })
        };
        let devices = stats
            .devices()
            .into_iter()
            .filter(|(device, _)| (mn.is_empty() || device == mn) && visible(device))
            .collect();
        let totals = if scope.is_empty() { Some(stats.snapshot()) } else { None };
        Ok(GatewayFigures { totals, devices })
    }
}
