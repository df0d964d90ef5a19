"""Stage two of had: pretraining the student from cached teacher features, evaluation, export."""
