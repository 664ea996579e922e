//! HJ 212 online-monitoring packets: parsing, acknowledgement, aggregation.
