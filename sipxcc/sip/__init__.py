"""SIP: codec, transports, transactions, dialogs and the user agent."""
