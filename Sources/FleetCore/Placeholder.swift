public enum _FleetCorePlaceholder {}
