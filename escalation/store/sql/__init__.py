"""The SQL both backends share: a dialect's conversions, row mappers, the statements a change set
becomes, and the queries; each backend only executes them its own way."""
