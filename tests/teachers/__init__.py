"""Teachers: several teachers, self-distillation, teachers in another label order."""
