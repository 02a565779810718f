"""The portal's views, one module per area. Views parse, call one selector or service, render."""
