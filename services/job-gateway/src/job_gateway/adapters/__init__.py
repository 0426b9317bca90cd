"""job-gateway's adapters: MongoDB (its own collections) and JetStream (attachments, dead
letters, consumer lag). Each translates its library's errors: NATS errors become
`fleetmail_runtime.bus.BusUnavailable`, a duplicate key becomes a False answer."""
