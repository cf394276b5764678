"""A local stand-in for NSP's KopiRegisterService: tables, importer, SOAP server, test STS."""
