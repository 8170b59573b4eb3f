"""The demo app: CRM + ERP + call-centre metadata and sample data."""
