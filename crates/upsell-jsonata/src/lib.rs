//! A JSONata parser and evaluator, with the functions AWS Step Functions adds.
