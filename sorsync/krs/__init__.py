"""Client side of NSP's KopiRegisterService (KRS): wire constants, envelope, feed parser, faults."""
