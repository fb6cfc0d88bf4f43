"""The typed core (under construction)."""
