"""What sending costs: price tables per provider (``prices``)."""
